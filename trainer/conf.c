/* SPDX-License-Identifier: Apache-2.0 */
/* The `trainer:` config table: every setting of the model, its optimizer,
 * micro-batching and metrics, with defaults, ranges and descriptions. */
#include <stddef.h>

#include "trainer/trainer.h"

#define OFF(f) offsetof(ld_trainer_conf_t, f)

static const ld_conf_row_t rows[] = {
    {"name", LD_CONF_STRING, OFF(name), "model", 0, 0, NULL,
     "Model name: directory in the model store and prefix of Kafka keys"},
    {"model", LD_CONF_ENUM, OFF(model), "logistic", 0, 0,
     "logistic|linear|softmax",
     "Model: logistic (binary, logloss), linear (squared loss) or softmax "
     "(num_classes classes)"},
    {"num_classes", LD_CONF_INT, OFF(num_classes), "2", 2, 1024, NULL,
     "Classes of the softmax model (labels 0..num_classes-1)"},
    {"hash_bits", LD_CONF_INT, OFF(hash_bits), "18", 1, 30, NULL,
     "Hashed sparse features map to 2^hash_bits weight slots (per class)"},
    {"dense_dim", LD_CONF_INT, OFF(dense_dim), "0", 0, 65536, NULL,
     "Length of the dense feature block"},
    {"optimizer", LD_CONF_ENUM, OFF(optimizer), "ftrl", 0, 0,
     "sgd|adagrad|ftrl|adam",
     "Optimizer: sgd, adagrad, ftrl (FTRL-Proximal, per coordinate) or adam"},
    {"learning_rate", LD_CONF_DOUBLE, OFF(learning_rate), "0.2", 0, 1e6, NULL,
     "Step size (sgd, adagrad, adam); alpha of ftrl"},
    {"lr_schedule", LD_CONF_ENUM, OFF(lr_schedule), "constant", 0, 0,
     "constant|inverse_scaling|exponential",
     "SGD schedule over the step t (micro-batches): lr, lr/(1+decay*t)^"
     "power_t, or lr*decay^t"},
    {"lr_decay", LD_CONF_DOUBLE, OFF(lr_decay), "0", 0, 1e6, NULL,
     "decay of the SGD schedule (exponential: a factor in (0,1])"},
    {"lr_power_t", LD_CONF_DOUBLE, OFF(lr_power_t), "0.5", 0, 10, NULL,
     "Exponent of the inverse_scaling schedule (0.5: inverse square root)"},
    {"ftrl_beta", LD_CONF_DOUBLE, OFF(ftrl_beta), "1.0", 0, 1e6, NULL,
     "FTRL-Proximal beta (smoothing of the per-coordinate rate)"},
    {"adagrad_initial_accumulator", LD_CONF_DOUBLE,
     OFF(adagrad_initial_accumulator), "0.1", 0, 1e6, NULL,
     "Starting value of AdaGrad's squared-gradient accumulator"},
    {"epsilon", LD_CONF_DOUBLE, OFF(epsilon), "1e-8", 0, 1, NULL,
     "Denominator guard of AdaGrad and Adam"},
    {"adam_beta1", LD_CONF_DOUBLE, OFF(adam_beta1), "0.9", 0, 0.999999, NULL,
     "Adam first-moment decay"},
    {"adam_beta2", LD_CONF_DOUBLE, OFF(adam_beta2), "0.999", 0, 0.999999, NULL,
     "Adam second-moment decay"},
    {"l1", LD_CONF_DOUBLE, OFF(l1), "0", 0, 1e6, NULL,
     "L1 strength: ftrl (exact zeros), sgd and adagrad (proximal step); not "
     "the bias; adam ignores it"},
    {"l2", LD_CONF_DOUBLE, OFF(l2), "0", 0, 1e6, NULL,
     "L2 strength (not applied to the bias)"},
    {"delayed_feedback", LD_CONF_ENUM, OFF(delayed_feedback), "none", 0, 0,
     "none|fnw",
     "fnw: importance-weight fake_neg/delayed_pos examples (Ktena et al. "
     "2019); use with labeling policy fake_negative (logistic only)"},
    {"dense_learning_rate", LD_CONF_DOUBLE, OFF(dense_learning_rate), "0.4", 0,
     1e6, NULL,
     "Step size (alpha of ftrl) of the dense block and the bias; 0: "
     "learning_rate"},
    {"dense_norm", LD_CONF_ENUM, OFF(dense_norm), "maxabs", 0, 0,
     "none|maxabs|standard",
     "maxabs: each dense feature's updates are scaled by the largest "
     "absolute value seen so far; standard: each dense feature is centred "
     "and scaled by its running mean and standard deviation (both online, "
     "checkpointed, predictions unchanged by the statistics' updates; "
     "weights stay in raw units); none: raw values"},
    {"batch_size", LD_CONF_INT, OFF(batch_size), "256", 1, 1048576, NULL,
     "Micro-batch size in examples"},
    {"batch_span", LD_CONF_DURATION, OFF(batch_span), "1s", 0, 86400000.0, NULL,
     "Cut a micro-batch when event time spans this much (0: count only)"},
    {"metrics_window", LD_CONF_INT, OFF(metrics_window), "10000", 1, 10000000,
     NULL, "Matured examples in the sliding window of prequential metrics"},
    {"blas_threads", LD_CONF_INT, OFF(blas_threads), "1", 1, 64, NULL,
     "OpenBLAS threads; keep 1 (results are identical, only slower)"},
    {"snapshot_step", LD_CONF_SIZE, OFF(snapshot_step), "1MiB", 65536,
     1073741824.0, NULL,
     "State copied per micro-batch while a checkpoint snapshot is pending"},
};

const ld_conf_section_t ld_trainer_conf_section = {
    "trainer", "Model, optimizer, micro-batching and prequential metrics",
    LD_CONF_ROWS(rows)};
