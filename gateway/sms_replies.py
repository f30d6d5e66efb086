"""Two-way SMS: an engineer's reply acknowledges, resolves or escalates an alert."""

from __future__ import annotations

import logging
from collections.abc import Callable

from core.enums import AlertStatus
from core.phone import mask
from gateway.alerts import AlertService
from gateway.config import Config, Engineer
from gateway.store import Alert, Store
from gateway.templates import Templates
from ivr_flows.sms_reply import SMS_HELP, SmsCommand, parse_sms_reply
from providers.base import InboundSms, Reply

log = logging.getLogger(__name__)

#: which alert states each command can act on
_ACTS_ON = {
    "acknowledge": (AlertStatus.TRIGGERED,),
    "escalate": (AlertStatus.TRIGGERED,),
    "resolve": (AlertStatus.TRIGGERED, AlertStatus.ACKNOWLEDGED),
}


class SmsReplies:
    def __init__(self, *, config: Config, store: Store, alerts: AlertService, templates: Templates,
                 by_number: Callable[[str], Engineer | None] | None = None) -> None:
        self.store = store
        self.alerts = alerts
        self.templates = templates
        self._engineer_by_number = {n: e for e in config.engineers.values() for n in e.phones}
        # An engineer by number, configured or from a directory (gateway.directory.roster.Roster.by_number)
        self._by_number = by_number if by_number is not None else self._engineer_by_number.get

    async def handle(self, sms: InboundSms) -> Reply:
        engineer = self._by_number(sms.sender)
        if engineer is None:
            # Only known engineers can act; say nothing to strangers (no SMS cost, no oracle).
            log.warning("SMS from unknown number %s ignored", mask(sms.sender))
            return Reply()
        command = parse_sms_reply(sms.text)
        if command is None:
            log.info("SMS from %s not understood; sent help", engineer.name)
            return Reply(text=SMS_HELP)
        alert, problem = await self._target(engineer.id, command)
        if alert is None:
            log.info("SMS %s from %s refused: %s", command.action, engineer.name, problem)
            return Reply(text=problem)
        if command.action == "acknowledge":
            result, changed = await self.alerts.acknowledge(alert.id, by=engineer.id,
                                                            how=f"acknowledged by {engineer.name} (SMS reply)")
        elif command.action == "resolve":
            result, changed = await self.alerts.resolve(alert.id, by=engineer.id,
                                                        how=f"resolved by {engineer.name} (SMS reply)")
        else:
            result, changed = await self.alerts.escalate(alert.id, by=f"{engineer.name} (SMS reply)")
        text = self.templates.render("alert_sms_status", alert=result, action=command.action, changed=changed)
        return Reply(text=text)

    async def _target(self, engineer: str, command: SmsCommand) -> tuple[Alert | None, str]:
        store = self.store
        allowed = _ACTS_ON[command.action]
        if command.alert_id is None:
            alert = await store.latest_alert_paged_to(engineer, statuses=allowed)
            if alert is None:
                return None, f"You have no open alert to {command.action}."
            return alert, ""
        alert = await store.get_alert(command.alert_id)
        if alert is None or not await store.was_paged(alert.id, engineer):
            return None, f"Alert #{command.alert_id} was not sent to you; nothing changed."
        if alert.status not in allowed:
            return None, f"Alert #{alert.id} is already {alert.status}; nothing changed."
        return alert, ""
