#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Container health check: GET /healthz on learnd's metrics endpoint, through
# bash's /dev/tcp because the image carries no curl or wget. /healthz
# answers 503 when the run loop has stalled. The port follows
# LEARND_METRICS_PORT (default 9464); learnd must listen on 0.0.0.0 or
# 127.0.0.1 inside the container.
port=${LEARND_METRICS_PORT:-9464}
exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
printf 'GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
read -r -t 5 _ status _ <&3 || exit 1
[ "$status" = 200 ]
