# gunicorn -c gunicorn.conf.py main:app
worker_class = "palfrey.workers.PalfreyWorker"
workers = 4                  # one per core
bind = "0.0.0.0:8000"
timeout = 30                 # a worker whose event loop is blocked this long is killed
graceful_timeout = 30        # TERM and HUP: in-flight requests get this long to finish
keepalive = 5                # Palfrey's --timeout-keep-alive
max_requests = 10000         # recycle workers (memory leaks in the app) ...
max_requests_jitter = 1000   # ... not all at once
accesslog = "-"              # Palfrey's access lines, through gunicorn's handler
