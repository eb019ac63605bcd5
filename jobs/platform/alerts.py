"""Alerts, through Airflow notifiers: every failed task of the marketing DAGs, and a night not
finished in time (the ``marketing_watchdog`` DAG's ``deadline`` task fails with
:class:`~jobs.platform.errors.DeadlineMissedError`), reach

- the task log, always: one line ``ALERT marketing pipeline failure dag=… task=… run=… try=…
  error=…`` that a log-based alert rule can match (:class:`LogNotifier`);
- a webhook, when ``alerts.webhook_url`` is set: a JSON POST with a Slack-style ``text`` and
  the fields (:class:`WebhookNotifier`);
- e-mail, when ``alerts.smtp_conn_id`` and ``alerts.email_to`` are set: the SMTP provider's
  notifier through that Airflow connection (:class:`MailNotifier`).

A notifier that cannot deliver logs why and never raises: the task's own failure is what must
show. The error of a pipeline exception already names the contract, column and count, the
unreconciled rows, or the stages a late night is missing.
"""

from __future__ import annotations

import html
import json
import logging
import urllib.request

from airflow.sdk import BaseNotifier

from jobs.platform.config import PipelineConfig
from jobs.platform.errors import one_line

log = logging.getLogger("marketing.alerts")


def alert_fields(context: dict) -> dict:
    """What an alert says, from a task callback's context."""
    ti = context.get("task_instance") or context.get("ti")
    exc = context.get("exception")
    return {
        "dag_id": getattr(ti, "dag_id", "?"),
        "task_id": getattr(ti, "task_id", "?"),
        "run_id": context.get("run_id") or getattr(ti, "run_id", None),
        "try_number": getattr(ti, "try_number", None),
        "error": one_line(f"{type(exc).__name__}: {exc}") if exc else "unknown",
        "log_url": getattr(ti, "log_url", None),
    }


def alert_text(fields: dict) -> str:
    return (
        f"marketing pipeline: {fields['dag_id']}.{fields['task_id']} failed (run {fields['run_id']}, "
        f"try {fields['try_number']}): {fields['error']}"
    )


class LogNotifier(BaseNotifier):
    """One structured ``ALERT`` line in the task log (always on)."""

    def notify(self, context) -> None:
        fields = alert_fields(context)
        log.error(
            "ALERT marketing pipeline failure dag=%s task=%s run=%s try=%s error=%s",
            fields["dag_id"], fields["task_id"], fields["run_id"], fields["try_number"], fields["error"],
        )  # fmt: skip


class WebhookNotifier(BaseNotifier):
    """POST the alert as JSON: ``text`` (what Slack and most chat webhooks display) plus the
    fields. The URL is a secret: it comes from the environment (``MKT_ALERTS__WEBHOOK_URL``)."""

    def __init__(self, url: str, timeout_s: float = 10.0):
        super().__init__()
        self.url, self.timeout_s = url, timeout_s

    def notify(self, context) -> None:
        fields = alert_fields(context)
        body = json.dumps({"text": alert_text(fields), **fields}, default=str).encode()
        request = urllib.request.Request(
            self.url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()
        except Exception as exc:  # noqa: BLE001 - never hide the task's own failure
            host = urllib.request.urlparse(self.url).netloc  # not the path: it may hold a token
            log.warning("alert webhook to %s failed: %s", host, one_line(exc))


def _mail_notifier_class():
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    class MailNotifier(SmtpNotifier):
        """The SMTP provider's notifier, with the alert as subject and body."""

        def notify(self, context) -> None:
            fields = alert_fields(context)
            self.subject = f"[marketing] {fields['dag_id']}.{fields['task_id']} failed"
            rows = "".join(
                f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                for k, v in fields.items()
            )
            self.html_content = f"<p>{html.escape(alert_text(fields))}</p><table>{rows}</table>"
            try:
                super().notify(context)
            except Exception as exc:  # noqa: BLE001 - never hide the task's own failure
                log.warning("alert e-mail through connection %s failed: %s", self.smtp_conn_id, one_line(exc))

    return MailNotifier


def failure_notifiers(config: PipelineConfig) -> list[BaseNotifier]:
    """The notifiers every task's ``on_failure_callback`` runs, from ``alerts.*``."""
    notifiers: list[BaseNotifier] = [LogNotifier()]
    alerts = config.alerts
    if alerts.webhook_url:
        notifiers.append(WebhookNotifier(alerts.webhook_url))
    if alerts.smtp_conn_id:
        notifiers.append(
            _mail_notifier_class()(to=alerts.email_to, from_email=alerts.email_from, smtp_conn_id=alerts.smtp_conn_id)
        )
    return notifiers
