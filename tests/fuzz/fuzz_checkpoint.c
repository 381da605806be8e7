/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target for the checkpoint decoder and chunk reassembly; with
 * -DLD_FUZZ_REPLAY it is a plain program replaying files or directories. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "trainer/checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ld_ckpt_t *c = NULL;
    char err[256];
    if (ld_ckpt_decode(data, size, &c, err, sizeof(err)) == LD_OK) {
        /* A valid checkpoint must turn into a snapshot and re-encode. */
        ld_snapshot_t *s = ld_ckpt_snapshot(c);
        if (s) {
            ld_ckpt_meta_t meta = {0};
            ld_buf_t b;
            meta.model = "fuzz";
            if (ld_ckpt_encode(s, &meta, &b) == LD_OK)
                free(b.data);
            ld_snapshot_destroy(s);
        }
        ld_ckpt_destroy(c);
    }
    /* The same bytes as a manifest with themselves as the only chunk. */
    ld_buf_t chunk = {(uint8_t *)(uintptr_t)data, size}, out;
    if (ld_ckpt_assemble(data, size, &chunk, 1, &out, err, sizeof(err)) ==
        LD_OK)
        free(out.data);
    return 0;
}

#ifdef LD_FUZZ_REPLAY
static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return 1;
    }
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 65536;
            uint8_t *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return 1;
            }
            buf = nb;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        if (r == 0)
            break;
        len += r;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, len);
    /* Every prefix too: truncations are the common real-world damage. */
    for (size_t n = 0; n < len && len <= 4096; n++)
        LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    int rc = 0, files = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            perror(argv[i]);
            return 1;
        }
        if (!S_ISDIR(st.st_mode)) {
            rc |= replay_file(argv[i]);
            files++;
            continue;
        }
        DIR *d = opendir(argv[i]);
        struct dirent *de;
        while (d && (de = readdir(d)) != NULL) {
            char p[4096];
            if (de->d_name[0] == '.')
                continue;
            snprintf(p, sizeof(p), "%s/%s", argv[i], de->d_name);
            rc |= replay_file(p);
            files++;
        }
        if (d)
            closedir(d);
    }
    printf("fuzz_checkpoint: replayed %d file(s)\n", files);
    return rc;
}
#endif
