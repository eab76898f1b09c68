"""Production serving with gunicorn (``azathioprine-cds serve`` without ``--dev``)."""
from __future__ import annotations

from .config import Config


def run_gunicorn(cfg: Config, *, host: str, port: int, workers: int, threads: int) -> int:
    from gunicorn.app.base import BaseApplication

    class Server(BaseApplication):
        def load_config(self) -> None:
            settings = {
                "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
                "workers": max(1, workers),
                "threads": max(1, threads),
                "worker_class": "gthread" if threads > 1 else "sync",
                "graceful_timeout": 20,
                "timeout": 30,
                "keepalive": 5,
                "accesslog": None,  # the app writes one structured line per request
                "errorlog": "-",
                "loglevel": "warning",
                "preload_app": False,
            }
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self):
            from . import create_app

            return create_app(cfg)

    Server().run()
    return 0


def app():  # pragma: no cover - for `gunicorn 'service.wsgi:app()'`
    from . import create_app

    return create_app()
