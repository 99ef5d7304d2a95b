"""WSGI entry point (``gunicorn app:app``) and the one-command local run (``python app.py``)."""

from gateway import create_app

app = create_app()

if __name__ == "__main__":
    from gateway.local import serve

    serve(app)
