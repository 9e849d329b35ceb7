"""A trade order's life: proposed, risk-checked, submitted, filled. It can never overfill."""

from __future__ import annotations

import re
from decimal import Decimal
from enum import StrEnum
from typing import Any
from uuid import UUID

from domain.base import JanusAggregate, require_text
from domain.errors import InvalidTransition, InvalidValue, Overfill
from domain.meta import CommandContext

SYMBOL = re.compile(r"^[A-Z0-9.\-]{1,16}$")


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderStatus(StrEnum):
    PROPOSED = "proposed"
    RISK_APPROVED = "risk_approved"
    RISK_REJECTED = "risk_rejected"
    SUBMITTED = "submitted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


OPEN_AT_BROKER = (OrderStatus.SUBMITTED, OrderStatus.PARTIALLY_FILLED)


class TradeOrder(JanusAggregate):
    @classmethod
    def propose(
        cls,
        order_id: UUID,
        goal_id: UUID | None,
        symbol: str,
        side: Side,
        quantity: Decimal,
        limit_price: Decimal | None,
        ctx: CommandContext,
    ) -> TradeOrder:
        if not SYMBOL.match(symbol):
            raise InvalidValue("symbol must be 1-16 of A-Z, 0-9, '.', '-'")
        if quantity <= 0:
            raise InvalidValue("quantity must be positive")
        if limit_price is not None and limit_price <= 0:
            raise InvalidValue("limit_price must be positive")
        return cls._open(
            cls.Proposed,
            ctx,
            id=order_id,
            goal_id=goal_id,
            symbol=symbol,
            side=side.value,
            quantity=quantity,
            limit_price=limit_price,
        )

    class Proposed(JanusAggregate.Created):
        goal_id: UUID | None
        symbol: str
        side: str
        quantity: Decimal
        limit_price: Decimal | None

    def __init__(
        self,
        goal_id: UUID | None,
        symbol: str,
        side: str,
        quantity: Decimal,
        limit_price: Decimal | None,
    ) -> None:
        self.goal_id = goal_id
        self.symbol = symbol
        self.side = Side(side)
        self.quantity = quantity
        self.limit_price = limit_price
        self.status = OrderStatus.PROPOSED
        self.filled_quantity = Decimal(0)
        self.fill_ids: list[str] = []
        self.fills: dict[str, tuple[Decimal, Decimal]] = {}  # fill id -> (quantity, price)
        self.broker_order_id: str | None = None
        self.risk_scores: dict[str, float] = {}

    def _require(self, *allowed: OrderStatus) -> None:
        if self.status not in allowed:
            raise InvalidTransition(f"order {self.id} is {self.status.value}")

    def record_risk_check(
        self, passed: bool, scores: dict[str, float], violations: list[str], ctx: CommandContext
    ) -> None:
        self._require(OrderStatus.PROPOSED)
        if not passed and not violations:
            raise InvalidValue("a failed risk check must name its violations")
        self._record(
            self.RiskChecked, ctx, passed=passed, scores=dict(scores), violations=list(violations)
        )

    class RiskChecked(JanusAggregate.Event):
        passed: bool
        scores: dict[str, float]
        violations: list[str]

        def apply(self, aggregate: Any) -> None:
            aggregate.risk_scores = dict(self.scores)
            aggregate.status = (
                OrderStatus.RISK_APPROVED if self.passed else OrderStatus.RISK_REJECTED
            )

    def submit(self, broker_order_id: str, ctx: CommandContext) -> None:
        self._require(OrderStatus.RISK_APPROVED)
        self._record(
            self.Submitted, ctx, broker_order_id=require_text("broker_order_id", broker_order_id)
        )

    class Submitted(JanusAggregate.Event):
        broker_order_id: str

        def apply(self, aggregate: Any) -> None:
            aggregate.broker_order_id = self.broker_order_id
            aggregate.status = OrderStatus.SUBMITTED

    def record_fill(
        self, fill_id: str, quantity: Decimal, price: Decimal, ctx: CommandContext
    ) -> bool:
        """Broker fills arrive at least once; a repeated fill id records nothing."""
        if fill_id in self.fill_ids:
            return False
        self._require(*OPEN_AT_BROKER)
        if quantity <= 0 or price <= 0:
            raise InvalidValue("fill quantity and price must be positive")
        if self.filled_quantity + quantity > self.quantity:
            raise Overfill(
                f"fill of {quantity} would take order {self.id} to "
                f"{self.filled_quantity + quantity} of {self.quantity}"
            )
        event = (
            self.Filled
            if self.filled_quantity + quantity == self.quantity
            else self.PartiallyFilled
        )
        self._record(event, ctx, fill_id=fill_id, quantity=quantity, price=price)
        return True

    class PartiallyFilled(JanusAggregate.Event):
        fill_id: str
        quantity: Decimal
        price: Decimal

        def apply(self, aggregate: Any) -> None:
            aggregate.fill_ids.append(self.fill_id)
            aggregate.fills[self.fill_id] = (self.quantity, self.price)
            aggregate.filled_quantity += self.quantity
            aggregate.status = OrderStatus.PARTIALLY_FILLED

    class Filled(PartiallyFilled):
        def apply(self, aggregate: Any) -> None:
            aggregate.fill_ids.append(self.fill_id)
            aggregate.fills[self.fill_id] = (self.quantity, self.price)
            aggregate.filled_quantity += self.quantity
            aggregate.status = OrderStatus.FILLED

    def reject(self, reason: str, ctx: CommandContext) -> None:
        self._require(OrderStatus.PROPOSED, OrderStatus.RISK_APPROVED, OrderStatus.SUBMITTED)
        self._record(self.Rejected, ctx, reason=require_text("reason", reason))

    class Rejected(JanusAggregate.Event):
        reason: str

        def apply(self, aggregate: Any) -> None:
            aggregate.status = OrderStatus.REJECTED

    def cancel(self, reason: str, ctx: CommandContext) -> None:
        self._require(
            OrderStatus.PROPOSED,
            OrderStatus.RISK_APPROVED,
            OrderStatus.RISK_REJECTED,
            *OPEN_AT_BROKER,
        )
        self._record(self.Cancelled, ctx, reason=require_text("reason", reason))

    class Cancelled(JanusAggregate.Event):
        reason: str

        def apply(self, aggregate: Any) -> None:
            aggregate.status = OrderStatus.CANCELLED
