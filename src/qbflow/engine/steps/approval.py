"""The `approval` step: ask people, wait (durably) for one decision, go on with it.

    - id: ok
      approval:
        message: "Pay bill {{ trigger.DocNumber }} of {{ trigger.TotalAmt | money }}?"
        approvers: [controller@example.com]     # who is asked (recorded; each gets a link of their own)
        timeout: 3d                             # then the outcome is on_timeout
        on_timeout: rejected
      notify:                                   # run once the approval exists; how approvers are told is yours
        - id: ask
          action: http.request
          input:
            url: https://chat.example.com/hooks/finance
            json: {text: "{{ approval.message }} Approve: {{ approval.approve_url }} Reject: {{ approval.reject_url }}"}
    - id: paid
      if: "{{ steps.ok.output.approved }}"
      then: [...]

The approval is stored once per (run, step path) (`store.approvals`), so a resumed run finds the same one and
the same links, and `notify` steps are ledgered like any nested step (`ok.ask`): a restart does not ask twice.
The run is then stored as "waiting" until the approval expires; a decision (link, dashboard or API) makes it
due at once. Output: {"outcome": "approved" | "rejected", "approved": bool, "timed_out": bool, "by", "at",
"comment", "approval_id"}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qbflow.engine.steps.base import At, WaitUntil, register, render_input
from qbflow.engine.steps.flow import _Flow
from qbflow.engine.workflow import Step
from qbflow.store.models import STEP_PENDING, utcnow

if TYPE_CHECKING:
    from qbflow.engine.executor import Execution

__all__ = ["ApprovalType", "approval_links"]

RESPOND_PATH = "/approvals/respond/"


def approval_links(base_url: str, tokens: list[tuple[str, str]]) -> dict[str, Any]:
    """What `notify` steps see as `approval` links: one per approver, the first one's as `url`,
    `approve_url` and `reject_url` (those open the page with the answer chosen; the page's button decides)."""
    base = base_url.rstrip("/")
    links = [{"approver": approver, "url": f"{base}{RESPOND_PATH}{token}",
              "approve_url": f"{base}{RESPOND_PATH}{token}?decision=approved",
              "reject_url": f"{base}{RESPOND_PATH}{token}?decision=rejected"} for approver, token in tokens]
    first = links[0] if links else {"url": None, "approve_url": None, "reject_url": None}
    return {"links": links, "url": first["url"], "approve_url": first["approve_url"],
            "reject_url": first["reject_url"]}


class ApprovalType(_Flow):
    """`approval:` with optional `notify:` steps; see the module's docstring."""

    name = key = "approval"
    options: tuple[str, ...] = ("notify",)

    def check(self, checker: Any, step: dict[str, Any], path: tuple[str | int, ...], scope: Any) -> None:
        spec = step.get("approval")
        if isinstance(spec, dict):
            for key in ("message", "approvers"):
                checker.check_expression((*path, "approval", key), spec.get(key), scope)

    async def run(self, ex: Execution, step: Step, at: At, context: dict[str, Any]) -> Any:
        spec = step.approval
        assert spec is not None
        if not ex.ledger_on:  # a test run asks nobody and does not wait
            message = render_input(spec.message, context, "approval.message")
            names = {**at.names, "approval": {"id": None, "message": message, "approvers": [],
                                              **approval_links("<dry run>", [("<approver>", "<token>")])}}
            await ex.run_steps(step.notify or [], prefix=at.path + ".", position=at.position, outputs=at.outputs,
                               names=names, reports=at.report.steps if at.report is not None else None)
            return self.finish(ex, at, {"outcome": "approved", "approved": True, "timed_out": False, "by": None,
                                        "at": None, "comment": None, "approval_id": None, "dry_run": True})
        approvals = ex.approvals
        if approvals is None or ex.run is None:
            raise ValueError("approval steps need qbflow's store of approvals (qbflow run, serve, up or worker)")
        record = approvals.for_step(ex.run.id, at.path)
        if record is None:  # the first attempt decides what is asked, of whom and until when
            message = render_input(spec.message, context, "approval.message")
            approvers = render_input(spec.approvers, context, "approval.approvers")
            if isinstance(approvers, str):
                approvers = [name.strip() for name in approvers.split(",") if name.strip()]
            if not isinstance(approvers, list):
                raise ValueError(f"approval.approvers must be a list of names, got {approvers!r}")
            record = approvals.request(ex.run.id, ex.run.workflow_id, at.path, message=str(message),
                                       approvers=[str(name) for name in approvers],
                                       expires_at=ex.now() + spec.timeout, on_timeout=spec.on_timeout)
        tokens = [(name, approvals.link_token(record, name)) for name in record.approvers] or [
            ("anyone with the link", approvals.link_token(record))]
        names = {**at.names, "approval": {"id": record.id, "message": record.message,
                                          "approvers": list(record.approvers),
                                          "expires_at": record.expires_at.isoformat(),
                                          **approval_links(ex.public_url, tokens)}}
        await ex.run_steps(step.notify or [], prefix=at.path + ".", position=at.position, outputs=at.outputs,
                           names=names)
        record = approvals.get(record.id)
        if record.status == "pending" and record.expires_at <= ex.now():
            record = approvals.expire(record.id, ex.now())
        if record.outcome is not None:
            return self.finish(ex, at, record.decision())
        ex.done(at, STEP_PENDING, input={"approval_id": record.id}, started_at=utcnow(), finished=False)
        approval_id = record.id

        def decided_meanwhile() -> bool:  # a decision between our read and the run's waiting state woke nothing
            return approvals.get(approval_id).status != "pending"

        raise WaitUntil(record.expires_at, at.path, recheck=decided_meanwhile)


register(ApprovalType())
