/* SPDX-License-Identifier: Apache-2.0 */
/* The plain-program side of a whole-input fuzz target (built with
 * -DLD_FUZZ_REPLAY, without libFuzzer): replays every file named, or inside
 * a directory named, through LLVMFuzzerTestOneInput, with every prefix of
 * the small ones. Included by one target's .c file. */
#ifndef LD_TESTS_FUZZ_REPLAY_H
#define LD_TESTS_FUZZ_REPLAY_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fz_replay_file(const char *path)
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

/* Replays the files and directories of argv[1..]; says how many under
 * name; non-zero when one could not be read. */
static int fz_replay_main(const char *name, int argc, char **argv)
{
    int rc = 0, files = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            perror(argv[i]);
            return 1;
        }
        if (!S_ISDIR(st.st_mode)) {
            rc |= fz_replay_file(argv[i]);
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
            rc |= fz_replay_file(p);
            files++;
        }
        if (d)
            closedir(d);
    }
    printf("%s: replayed %d file(s)\n", name, files);
    return rc;
}

#endif /* LD_TESTS_FUZZ_REPLAY_H */
