"""The workers' settings: defaults, rotation lists, and errors that name what is missing."""

from __future__ import annotations

import pytest

from workers.channels import LogChannel, WebhookChannel, WhatsAppChannel, build_channels
from workers.settings import WorkerSettings

SECRET = "whsec_dGVzdC1zZWNyZXQ="


def test_the_log_channel_is_the_default():
    settings = WorkerSettings.from_env({})
    assert settings.notify_channels == ("log",)
    assert [type(c) for c in build_channels(settings)] == [LogChannel]


def test_every_channel_from_the_environment():
    settings = WorkerSettings.from_env(
        {
            "NOTIFY_CHANNELS": "log, whatsapp, webhooks",
            "WHATSAPP_TOKEN": "token",
            "WHATSAPP_PHONE_NUMBER_ID": "123",
            "WHATSAPP_TEMPLATE_PAYMENT": "paid_v2",
            "NOTIFY_WEBHOOK_URLS": "https://a.example/hook,https://b.example/hook",
            "NOTIFY_WEBHOOK_SECRET": f"{SECRET},whsec_b2xkLXNlY3JldA==",
        }
    )
    channels = build_channels(settings)
    assert [type(c) for c in channels] == [
        LogChannel,
        WhatsAppChannel,
        WebhookChannel,
        WebhookChannel,
    ]
    assert [c.name for c in channels][2:] == [
        "webhook:https://a.example/hook",
        "webhook:https://b.example/hook",
    ]
    assert settings.whatsapp_templates["payment"] == "paid_v2"
    assert settings.whatsapp_templates["topup"] == "topup_confirmation"
    assert "token" not in repr(settings)
    assert "b2xkLXNlY3JldA" not in repr(settings)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"NOTIFY_CHANNELS": "sms"}, "unknown channels"),
        ({"NOTIFY_CHANNELS": "whatsapp"}, "WHATSAPP_TOKEN"),
        ({"NOTIFY_CHANNELS": "whatsapp", "WHATSAPP_TOKEN": "t"}, "WHATSAPP_PHONE_NUMBER_ID"),
        ({"NOTIFY_CHANNELS": "webhooks"}, "NOTIFY_WEBHOOK_URLS"),
        (
            {"NOTIFY_CHANNELS": "webhooks", "NOTIFY_WEBHOOK_URLS": "https://a.example"},
            "NOTIFY_WEBHOOK_SECRET",
        ),
        ({"NOTIFY_WEBHOOK_URLS": "ftp://a.example"}, "http"),
        ({"WHATSAPP_API_URL": "graph.facebook.com"}, "WHATSAPP_API_URL"),
        ({"NOTIFY_TIMEOUT_S": "soon"}, "NOTIFY_TIMEOUT_S"),
        ({"NOTIFY_TIMEOUT_S": "600"}, "between"),
    ],
)
def test_a_bad_setting_is_named(environ, message):
    with pytest.raises(ValueError, match=message):
        WorkerSettings.from_env(environ)


def test_a_webhook_secret_that_is_not_base64_is_refused_at_start():
    settings = WorkerSettings.from_env(
        {
            "NOTIFY_CHANNELS": "webhooks",
            "NOTIFY_WEBHOOK_URLS": "https://a.example",
            "NOTIFY_WEBHOOK_SECRET": "whsec_not base64!",
        }
    )
    with pytest.raises(ValueError, match="base64"):
        build_channels(settings)


def test_the_longest_delivery_counts_one_call_per_webhook_url_and_whatsapp():
    assert WorkerSettings().longest_delivery_s() == 0
    settings = WorkerSettings(
        notify_channels=("log", "webhooks", "whatsapp"),
        webhook_urls=("https://a.example/hook", "https://b.example/hook"),
        webhook_secrets=("whsec_x",),
        whatsapp_token="t",
        whatsapp_phone_number_id="1",
        notify_timeout_s=10.0,
    )
    assert settings.longest_delivery_s() == 30.0
