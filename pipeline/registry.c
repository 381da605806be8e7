/* SPDX-License-Identifier: Apache-2.0 */
/* A client of the Confluent Schema Registry REST API (GET /schemas/ids/{id},
 * which Apicurio Registry serves under /apis/ccompat/v7 too) over libcurl:
 * basic auth, TLS settings, a bounded wait while the registry is down.
 *
 * Waiting: a fetch that fails for a cause that may heal (no connection, a
 * timeout, HTTP 5xx or 429) is retried with backoff (100 ms doubling to
 * 2 s) until registry_deadline has passed since the registry was first
 * seen down; then it fails, and so does every later fetch at its first
 * failed attempt, until one succeeds. The ingest thread, and with it the
 * input, thus waits at most registry_deadline per outage, not per record;
 * records met after that are dead-lettered (unknown_schema, with the
 * reason) instead of piling up. The password is handed to libcurl only and
 * never written to a log or an error text. */
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pipeline/internal.h"

#define MAX_BODY   (4u << 20)
#define BACKOFF_MS 100
#define MAX_SLEEP  2000

struct ld_registry {
    CURL *curl;
    char *base; /* URL without a trailing '/' */
    struct curl_slist *headers;
    int64_t timeout_ms, deadline_ms;
    int64_t down_since; /* monotonic ms, -1: up */
    char *body;
    size_t len;
    int too_big;
    char curl_err[CURL_ERROR_SIZE];
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t on_body(char *data, size_t size, size_t n, void *opaque)
{
    ld_registry_t *r = opaque;
    size_t add = size * n;
    if (r->len + add > MAX_BODY) {
        r->too_big = 1;
        return 0; /* libcurl aborts the transfer */
    }
    char *b = realloc(r->body, r->len + add + 1);
    if (!b)
        return 0;
    memcpy(b + r->len, data, add);
    r->len += add;
    b[r->len] = '\0';
    r->body = b;
    return add;
}

ld_registry_t *ld_registry_new(const ld_pipeline_conf_t *conf, char *errstr,
                               size_t errstr_size)
{
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK) {
        snprintf(errstr, errstr_size, "libcurl: %s",
                 curl_easy_strerror(curl_init_rc));
        return NULL;
    }
    const char *url = conf->registry_url;
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
        snprintf(errstr, errstr_size,
                 "pipeline.registry_url: '%s' is not an http:// or https:// "
                 "URL",
                 strchr(url, '@') ? "(not shown: holds credentials)" : url);
        return NULL;
    }
    ld_registry_t *r = calloc(1, sizeof(*r));
    if (!r || !(r->base = strdup(url)) || !(r->curl = curl_easy_init())) {
        snprintf(errstr, errstr_size, "out of memory");
        ld_registry_destroy(r);
        return NULL;
    }
    size_t n = strlen(r->base);
    while (n > 0 && r->base[n - 1] == '/')
        r->base[--n] = '\0';
    r->timeout_ms = conf->registry_timeout_ms;
    r->deadline_ms = conf->registry_deadline_ms;
    r->down_since = -1;
    r->headers = curl_slist_append(
        NULL, "Accept: application/vnd.schemaregistry.v1+json, "
              "application/vnd.schemaregistry+json, application/json");
    CURL *c = r->curl;
    int bad = !r->headers;
    bad |= curl_easy_setopt(c, CURLOPT_HTTPHEADER, r->headers) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)r->timeout_ms) !=
           CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                            (long)r->timeout_ms) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_WRITEDATA, r) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->curl_err) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
    if (conf->registry_user && *conf->registry_user) {
        bad |= curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC) !=
               CURLE_OK;
        bad |= curl_easy_setopt(c, CURLOPT_USERNAME, conf->registry_user) !=
               CURLE_OK;
        bad |=
            curl_easy_setopt(c, CURLOPT_PASSWORD,
                             conf->registry_password ? conf->registry_password
                                                     : "") != CURLE_OK;
    }
    if (conf->registry_ca_file && *conf->registry_ca_file)
        bad |= curl_easy_setopt(c, CURLOPT_CAINFO, conf->registry_ca_file) !=
               CURLE_OK;
    if (conf->registry_cert_file && *conf->registry_cert_file)
        bad |= curl_easy_setopt(c, CURLOPT_SSLCERT, conf->registry_cert_file) !=
               CURLE_OK;
    if (conf->registry_key_file && *conf->registry_key_file)
        bad |= curl_easy_setopt(c, CURLOPT_SSLKEY, conf->registry_key_file) !=
               CURLE_OK;
    if (bad) {
        snprintf(errstr, errstr_size,
                 "libcurl refused a registry setting (TLS support?)");
        ld_registry_destroy(r);
        return NULL;
    }
    return r;
}

void ld_registry_destroy(ld_registry_t *r)
{
    if (!r)
        return;
    if (r->curl)
        curl_easy_cleanup(r->curl);
    curl_slist_free_all(r->headers);
    free(r->base);
    free(r->body);
    free(r);
}

/* One GET of base + rel; what ("schema id 7") starts every error text.
 * LD_REG_DOWN for causes that may heal; on LD_REG_OK *out is the parsed
 * body (caller json_decref's it). */
static ld_reg_status_t fetch_once(ld_registry_t *r, const char *rel,
                                  const char *what, json_t **out, char *err,
                                  size_t err_size)
{
    char url[2048];
    if ((size_t)snprintf(url, sizeof(url), "%s%s", r->base, rel) >=
        sizeof(url)) {
        snprintf(err, err_size, "%s: registry URL too long", what);
        return LD_REG_REFUSED;
    }
    free(r->body);
    r->body = NULL;
    r->len = 0;
    r->too_big = 0;
    r->curl_err[0] = '\0';
    if (curl_easy_setopt(r->curl, CURLOPT_URL, url) != CURLE_OK) {
        snprintf(err, err_size, "%s: registry URL refused", what);
        return LD_REG_REFUSED;
    }
    CURLcode rc = curl_easy_perform(r->curl);
    if (r->too_big) {
        snprintf(err, err_size, "%s: registry answer over %u bytes", what,
                 MAX_BODY);
        return LD_REG_REFUSED;
    }
    if (rc != CURLE_OK) {
        snprintf(err, err_size, "%s: registry: %s", what,
                 r->curl_err[0] ? r->curl_err : curl_easy_strerror(rc));
        return LD_REG_DOWN;
    }
    long status = 0;
    curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status == 404) {
        snprintf(err, err_size, "%s is not in the registry", what);
        return LD_REG_UNKNOWN;
    }
    if (status >= 500 || status == 429) {
        snprintf(err, err_size, "%s: registry answered HTTP %ld", what, status);
        return LD_REG_DOWN;
    }
    if (status != 200) {
        snprintf(err, err_size, "%s: registry answered HTTP %ld%s", what,
                 status,
                 status == 401 || status == 403
                     ? " (check registry_user / registry_password)"
                     : "");
        return LD_REG_REFUSED;
    }
    json_error_t jerr;
    json_t *j = r->body ? json_loadb(r->body, r->len, 0, &jerr) : NULL;
    if (!json_is_string(json_object_get(j, "schema"))) {
        snprintf(err, err_size, "%s: registry answer has no \"schema\" string",
                 what);
        json_decref(j);
        return LD_REG_REFUSED;
    }
    *out = j;
    return LD_REG_OK;
}

/* fetch_once, waiting while the registry is down (see the top). */
static ld_reg_status_t fetch(ld_registry_t *r, const char *rel,
                             const char *what, json_t **out, char *err,
                             size_t err_size)
{
    int64_t backoff = BACKOFF_MS;
    *out = NULL;
    for (;;) {
        ld_reg_status_t st = fetch_once(r, rel, what, out, err, err_size);
        if (st != LD_REG_DOWN) {
            if (r->down_since >= 0)
                ld_log(LD_LOG_NOTICE, "pipeline",
                       "msg=\"schema registry reachable again\" "
                       "down_ms=%lld",
                       (long long)(mono_ms() - r->down_since));
            r->down_since = -1;
            return st;
        }
        int64_t now = mono_ms();
        if (r->down_since < 0) {
            r->down_since = now;
            ld_log(LD_LOG_WARN, "pipeline",
                   "msg=\"schema registry unreachable, input waits\" "
                   "deadline_ms=%lld",
                   (long long)r->deadline_ms);
        }
        int64_t left = r->down_since + r->deadline_ms - now;
        if (left <= 0) {
            size_t used = strlen(err);
            snprintf(err + used, err_size - used,
                     " (unreachable for %lld ms, past registry_deadline)",
                     (long long)(now - r->down_since));
            return LD_REG_DOWN;
        }
        int64_t nap = backoff < left ? backoff : left;
        struct timespec ts = {(time_t)(nap / 1000),
                              (long)(nap % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        backoff = backoff * 2 > MAX_SLEEP ? MAX_SLEEP : backoff * 2;
    }
}

ld_reg_status_t ld_registry_get(ld_registry_t *r, uint32_t id, char **schema,
                                char **type, char *err, size_t err_size)
{
    char rel[64], what[32];
    json_t *j;
    *schema = *type = NULL;
    snprintf(rel, sizeof(rel), "/schemas/ids/%u", id);
    snprintf(what, sizeof(what), "schema id %u", id);
    ld_reg_status_t st = fetch(r, rel, what, &j, err, err_size);
    if (st != LD_REG_OK)
        return st;
    const char *t = json_string_value(json_object_get(j, "schemaType"));
    *schema = strdup(json_string_value(json_object_get(j, "schema")));
    *type = strdup(t ? t : "AVRO"); /* the API omits it for Avro */
    json_decref(j);
    if (!*schema || !*type) {
        free(*schema);
        free(*type);
        *schema = *type = NULL;
        snprintf(err, err_size, "out of memory");
        return LD_REG_REFUSED;
    }
    return LD_REG_OK;
}

/* ---- Protobuf schemas as descriptors ------------------------------------ */

#define MAX_FILES 256

/* Decodes standard base64 (RFC 4648, padding optional) of s into a new
 * buffer; -1 when s is not base64 (.proto text has spaces and ';'). */
static int unbase64(const char *s, uint8_t **out, size_t *n)
{
    size_t len = strlen(s);
    uint8_t *b = malloc(len / 4 * 3 + 3);
    uint32_t acc = 0;
    int bits = 0;
    size_t k = 0, i = 0;
    if (!b)
        return -1;
    for (; i < len && s[i] != '='; i++) {
        char c = s[i];
        int v = c >= 'A' && c <= 'Z'   ? c - 'A'
                : c >= 'a' && c <= 'z' ? c - 'a' + 26
                : c >= '0' && c <= '9' ? c - '0' + 52
                : c == '+'             ? 62
                : c == '/'             ? 63
                                       : -1;
        if (v < 0) {
            free(b);
            return -1;
        }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            b[k++] = (uint8_t)(acc >> bits);
        }
    }
    while (i < len && s[i] == '=')
        i++;
    if (i != len || len == 0) {
        free(b);
        return -1;
    }
    *out = b;
    *n = k;
    return 0;
}

void ld_reg_files_free(ld_reg_file_t *files, uint32_t nfiles)
{
    for (uint32_t i = 0; files && i < nfiles; i++) {
        free(files[i].name);
        free(files[i].data);
    }
    free(files);
}

typedef struct pfetch {
    ld_registry_t *r;
    ld_reg_file_t *f;
    uint32_t n;
    int text; /* the registry answered .proto text */
    char *err;
    size_t err_size;
} pfetch_t;

static ld_reg_status_t add_refs(pfetch_t *p, json_t *refs, int depth);

/* Appends the schema of answer j as file name (NULL: the schema itself),
 * then its references. */
static ld_reg_status_t add_answer(pfetch_t *p, json_t *j, const char *name,
                                  const char *what, int depth)
{
    const char *t = json_string_value(json_object_get(j, "schemaType"));
    if (!t || strcmp(t, "PROTOBUF") != 0) {
        snprintf(p->err, p->err_size, "%s: the registry has a %s schema", what,
                 t ? t : "AVRO");
        return LD_REG_REFUSED;
    }
    uint8_t *data;
    size_t len;
    if (unbase64(json_string_value(json_object_get(j, "schema")), &data, &len) <
        0) {
        p->text = 1;
        return LD_REG_OK;
    }
    ld_reg_file_t *f = &p->f[p->n];
    f->data = data;
    f->len = len;
    p->n++;
    if (name && !(f->name = strdup(name))) {
        snprintf(p->err, p->err_size, "out of memory");
        return LD_REG_REFUSED;
    }
    return add_refs(p, json_object_get(j, "references"), depth + 1);
}

/* Fetches every reference {name, subject, version} not fetched yet. */
static ld_reg_status_t add_refs(pfetch_t *p, json_t *refs, int depth)
{
    size_t i;
    json_t *ref;
    json_array_foreach(refs, i, ref)
    {
        const char *name = json_string_value(json_object_get(ref, "name"));
        const char *subj = json_string_value(json_object_get(ref, "subject"));
        json_t *ver = json_object_get(ref, "version");
        if (!name || !subj || !json_is_integer(ver)) {
            snprintf(p->err, p->err_size,
                     "a reference without name, subject or version");
            return LD_REG_REFUSED;
        }
        int seen = 0;
        for (uint32_t k = 1; k < p->n && !seen; k++)
            seen = strcmp(p->f[k].name, name) == 0;
        if (seen)
            continue;
        if (p->n >= MAX_FILES || depth > 32) {
            snprintf(p->err, p->err_size, "more than %d referenced files",
                     MAX_FILES);
            return LD_REG_REFUSED;
        }
        char *esc = curl_easy_escape(p->r->curl, subj, 0);
        char rel[1600], what[600];
        if (!esc) {
            snprintf(p->err, p->err_size, "out of memory");
            return LD_REG_REFUSED;
        }
        snprintf(rel, sizeof(rel),
                 "/subjects/%.1400s/versions/%lld"
                 "?format=serialized",
                 esc, (long long)json_integer_value(ver));
        curl_free(esc);
        snprintf(what, sizeof(what),
                 "reference %.250s (subject %.250s "
                 "version %lld)",
                 name, subj, (long long)json_integer_value(ver));
        json_t *j;
        ld_reg_status_t st = fetch(p->r, rel, what, &j, p->err, p->err_size);
        if (st == LD_REG_UNKNOWN)
            st = LD_REG_REFUSED; /* the schema names a reference it lacks */
        if (st != LD_REG_OK)
            return st;
        st = add_answer(p, j, name, what, depth);
        json_decref(j);
        if (st != LD_REG_OK || p->text)
            return st;
    }
    return LD_REG_OK;
}

ld_reg_status_t ld_registry_get_proto(ld_registry_t *r, uint32_t id,
                                      ld_reg_file_t **files, uint32_t *nfiles,
                                      char *err, size_t err_size)
{
    char rel[64], what[32];
    json_t *j;
    pfetch_t p = {r, calloc(MAX_FILES, sizeof(*p.f)), 0, 0, err, err_size};
    *files = NULL;
    *nfiles = 0;
    if (!p.f) {
        snprintf(err, err_size, "out of memory");
        return LD_REG_REFUSED;
    }
    snprintf(rel, sizeof(rel), "/schemas/ids/%u?format=serialized", id);
    snprintf(what, sizeof(what), "schema id %u", id);
    ld_reg_status_t st = fetch(r, rel, what, &j, err, err_size);
    if (st == LD_REG_OK) {
        st = add_answer(&p, j, NULL, what, 0);
        json_decref(j);
    }
    if (st != LD_REG_OK || p.text) {
        ld_reg_files_free(p.f, p.n);
        return st;
    }
    *files = p.f;
    *nfiles = p.n;
    return LD_REG_OK;
}

/* ---- Which message a Confluent index path names in .proto text ---------- */

/* The next token of a .proto text at *pp: an identifier (letters, digits,
 * '_' and '.'), a quoted string (skipped whole) or one punctuation byte;
 * comments skipped. Returns its length (0 at the end); *tok points at it. */
static size_t next_token(const char **pp, const char **tok)
{
    const char *p = *pp;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
            p++;
        if (p[0] == '/' && p[1] == '/') {
            while (*p && *p != '\n')
                p++;
        } else if (p[0] == '/' && p[1] == '*') {
            const char *e = strstr(p + 2, "*/");
            p = e ? e + 2 : p + strlen(p);
        } else {
            break;
        }
    }
    *tok = p;
    if (!*p) {
        *pp = p;
        return 0;
    }
    const char *q = p;
    if (*q == '"' || *q == '\'') {
        char quote = *q++;
        while (*q && *q != quote)
            q += q[0] == '\\' && q[1] ? 2 : 1;
        if (*q)
            q++;
    } else if ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') ||
               (*q >= '0' && *q <= '9') || *q == '_' || *q == '.') {
        while ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') ||
               (*q >= '0' && *q <= '9') || *q == '_' || *q == '.')
            q++;
    } else {
        q++;
    }
    *pp = q;
    return (size_t)(q - p);
}

#define MAX_NEST 64

int ld_proto_message_at(const char *text, const uint32_t *path, uint32_t n,
                        char *out, size_t out_size)
{
    /* per open brace: message (1) or anything else (0), and how many
     * messages it holds so far */
    uint8_t is_msg[MAX_NEST + 1];
    uint32_t count[MAX_NEST + 1];
    int depth = 0;
    uint32_t matched = 0; /* path entries matched by the open messages */
    int on_path[MAX_NEST + 1];
    char pkg[256] = "", name[1024] = "";
    const char *p = text, *t;
    size_t len;
    is_msg[0] = 1; /* the file holds the top-level messages */
    count[0] = 0;
    on_path[0] = 1;
    if (n == 0)
        return -1;
    while ((len = next_token(&p, &t)) > 0) {
        if (depth == 0 && len == 7 && memcmp(t, "package", 7) == 0) {
            const char *pn;
            size_t pl = next_token(&p, &pn);
            if (pl == 0 || pl >= sizeof(pkg))
                return -1;
            memcpy(pkg, pn, pl);
            pkg[pl] = '\0';
            continue;
        }
        if (len == 7 && memcmp(t, "message", 7) == 0 && is_msg[depth]) {
            const char *mn, *br, *back = p;
            size_t ml = next_token(&p, &mn);
            if (ml == 0 || *mn == '=' || next_token(&p, &br) != 1 ||
                *br != '{') {
                p = back; /* a field named message, not a declaration */
                continue;
            }
            if (depth == MAX_NEST)
                return -1;
            uint32_t idx = count[depth]++;
            int hit = on_path[depth] && (uint32_t)depth == matched &&
                      matched < n && path[matched] == idx;
            depth++;
            is_msg[depth] = 1;
            count[depth] = 0;
            on_path[depth] = hit;
            if (hit) {
                size_t used = strlen(name);
                if (used + ml + 2 >= sizeof(name))
                    return -1;
                if (used)
                    name[used++] = '.';
                memcpy(name + used, mn, ml);
                name[used + ml] = '\0';
                if (++matched == n) {
                    snprintf(out, out_size, "%s%s%s", pkg, *pkg ? "." : "",
                             name);
                    return 0;
                }
            }
            continue;
        }
        if (*t == '{' && len == 1) {
            if (depth == MAX_NEST)
                return -1;
            depth++;
            is_msg[depth] = 0;
            count[depth] = 0;
            on_path[depth] = 0;
        } else if (*t == '}' && len == 1) {
            if (depth == 0)
                return -1;
            if (on_path[depth] && is_msg[depth])
                return -1; /* the message on the path ended first */
            depth--;
        }
    }
    return -1;
}
