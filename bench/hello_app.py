"""Baseline for bench/receiver.py: a Flask endpoint answering like the receiver, doing nothing."""

from flask import Flask, Response, jsonify


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/webhooks/<gateway>")
    def hello(gateway: str) -> Response:
        return jsonify(status="accepted")

    return app
