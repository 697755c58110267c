"""A PalfreyWorker with other Palfrey options: gunicorn -k custom_worker:LimitedWorker main:app"""

from palfrey.workers import PalfreyWorker


class LimitedWorker(PalfreyWorker):
    CONFIG_KWARGS = {
        "limit_body_size": 1024 * 1024,  # 413 for a body over 1 MiB
        "limit_concurrency": 500,  # 503 past 500 connections or requests per worker
        "server_header": False,
    }
