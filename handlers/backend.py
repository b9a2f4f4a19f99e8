"""What the handlers need from the composition root (infra/node.py's Node), as protocols:
the handlers see this, never infra.  tests/integration/node_is_a_backend.py has mypy check
that the node is one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar
from uuid import UUID

from authbus.domain.commands import Command
from authbus.domain.decisions import logins
from authbus.domain.policy import Actor
from authbus.domain.scopes import Scope
from authbus.domain.unit_of_work import UnitOfWork
from authbus.handlers.metrics import RequestStats
from authbus.projections.jwt_tokens import VerificationKeys
from authbus.projections.memos import Bearers, Views
from authbus.projections.read_model import ReadModel

R = TypeVar("R")  # what a decision returns


class Answered(Protocol):
    """A challenge answered: by whom, for which tenant, and the nonce it spends."""

    @property
    def tenant_id(self) -> UUID: ...
    @property
    def public_key(self) -> str: ...
    @property
    def nonce(self) -> str: ...


class Challenges(Protocol):
    """Issues Ed25519 login challenges and checks their answers (infra/challenges.py)."""

    def issue(self, tenant_id: UUID, public_key: str, now: float) -> tuple[str, int]: ...
    def answer(self, challenge: str, signature: str, now: float) -> Answered | None: ...


class Backend(Protocol):
    """What the handlers need from the composition root (infra/node.py's Node)."""

    model: ReadModel
    bearers: Bearers  # beside the model: bearers already checked,
    views: Views  # and the parts of verify's reply already built
    consistency_wait: float
    stats: RequestStats
    audit_public_key: str  # base64url, the raw 32-byte Ed25519 key that signs checkpoints
    issuer: str  # what access tokens carry as ``iss`` (AUTHBUS_ISSUER)

    @property  # read-only here, so an implementation may hold a richer kind (infra's Keyring)
    def keys(self) -> VerificationKeys: ...
    @property
    def challenges(self) -> Challenges: ...

    def now(self) -> float: ...
    async def health(self) -> dict[str, Any]: ...
    async def reached(self, position: int, timeout: float) -> bool: ...
    async def execute(self, command: Command, actor: Actor) -> tuple[dict[str, Any], int]: ...
    async def perform(self, name: str, actor_id: str, decide: Callable[[UnitOfWork], R]) -> tuple[R, int]: ...
    async def login(
        self, tenant_id: UUID, username: str, password: str, source: str, caller: str, scopes: list[Scope] | None = None
    ) -> tuple[logins.Outcome, int]: ...
    def admit_signup(self, tenant_id: UUID, caller: str, switch: str) -> None:
        """``forbidden`` unless the tenant's policy has ``switch`` on; ``rate_limited`` when the
        caller or the tenant has had its sign-ups for the minute; else counts this one."""

    async def register(
        self, tenant_id: UUID, username: str, password: str, source: str, caller: str
    ) -> tuple[logins.Started, int]: ...
    async def read_log(self, start: int, limit: int) -> list[tuple[int, Any]]: ...
    async def admit(self, work: Awaitable[None], lane: str = "default") -> None:
        """Run ``work`` beside other requests, so a slow one blocks nothing else; each
        ``lane`` has its own bound, so a flood in one leaves the others their room."""
