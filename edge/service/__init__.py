"""Running as a service: `health` (systemd sd_notify READY/WATCHDOG/STATUS/STOPPING) and
`metrics_http` (Prometheus /metrics and /healthz).
May import: the standard library, `edge.metrics`, `edge.errors`.
"""
