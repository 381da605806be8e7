/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of daemon/lineage.c: the dead_lettered and late_labels_dropped
 * counts (issue #15 item 8) since the last take and in total, across a save
 * and load (a restart), and states saved before the counts were kept. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "publish/publish.h"

static const char *const topics[] = {"events", "labels"};

static void test_counts(void **state)
{
    (void)state;
    ld_lineage_t *l = ld_lineage_new();
    assert_non_null(l);
    ld_lineage_set_totals(l, 100, 7); /* a warm start's parent */
    ld_lineage_consumed(l, topics[0], 0, 5);
    ld_lineage_count(l, 3, 1);
    ld_lineage_count(l, 2, 0);
    Learnd__V1__Lineage *m = ld_lineage_take(l, NULL, 0);
    assert_non_null(m);
    assert_non_null(m->counts);
    assert_non_null(m->total_counts);
    assert_int_equal(m->counts->dead_lettered, 5);
    assert_int_equal(m->counts->late_labels_dropped, 1);
    assert_int_equal(m->total_counts->dead_lettered, 105);
    assert_int_equal(m->total_counts->late_labels_dropped, 8);
    ld_lineage_pb_free(m);

    /* since the take: counted afresh, totals go on; a restart keeps both */
    ld_lineage_count(l, 4, 2);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(ld_lineage_save(l, &buf, &len), LD_OK);
    ld_lineage_destroy(l);
    l = ld_lineage_new();
    assert_int_equal(ld_lineage_load(l, topics, 2, buf, len), LD_OK);
    m = ld_lineage_take(l, NULL, 0);
    assert_non_null(m);
    assert_int_equal(m->counts->dead_lettered, 4);
    assert_int_equal(m->counts->late_labels_dropped, 2);
    assert_int_equal(m->total_counts->dead_lettered, 109);
    assert_int_equal(m->total_counts->late_labels_dropped, 10);
    ld_lineage_pb_free(m);
    ld_lineage_destroy(l);

    /* a state saved before the counts were kept loads with zeros; a cut
     * one is corrupt */
    l = ld_lineage_new();
    assert_int_equal(ld_lineage_load(l, topics, 2, buf, len - 32), LD_OK);
    m = ld_lineage_take(l, NULL, 0);
    assert_int_equal(m->total_counts->dead_lettered, 0);
    ld_lineage_pb_free(m);
    assert_int_equal(ld_lineage_load(l, topics, 2, buf, len - 1),
                     LD_ERR_CORRUPT);
    ld_lineage_destroy(l);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
