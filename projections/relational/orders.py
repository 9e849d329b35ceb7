"""Trade orders and the positions their fills add up to."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Connection

from domain.trade import Side, TradeOrder
from event_store.reader import LoggedEvent
from projections.relational.batch import Rows
from projections.relational.tables import exact


class OrderRows(Rows):
    def apply(self, logged: LoggedEvent, oid: str, conn: Connection) -> None:
        event = logged.event
        match event:
            case TradeOrder.Proposed():
                self._batch.insert(self.t.orders, _proposed_order(oid, event))
                return
            case TradeOrder.RiskChecked():
                changes: dict[str, Any] = {
                    "status": "risk_approved" if event.passed else "risk_rejected",
                    "risk_passed": event.passed,
                    "risk_violations": list(event.violations),
                }
            case TradeOrder.Submitted():
                changes = {"status": "submitted", "broker_order_id": event.broker_order_id}
            case TradeOrder.PartiallyFilled():  # and Filled, its subclass
                self._fill(oid, event, conn)
                return
            case TradeOrder.Rejected():
                changes = {"status": "rejected", "reason": event.reason}
            case TradeOrder.Cancelled():
                changes = {"status": "cancelled", "reason": event.reason}
            case _:
                return
        self._batch.update(conn, self.t.orders, oid, updated_at=event.timestamp, **changes)

    def _fill(self, oid: str, event: Any, conn: Connection) -> None:
        order = self._batch.get(conn, self.t.orders, oid)
        if order is None:
            raise LookupError(f"order {oid} has no row: its Proposed event was never projected")
        filled = order["filled_quantity"] + event.quantity
        paid = (order["average_fill_price"] or Decimal(0)) * order["filled_quantity"]
        order.update(
            status="filled" if isinstance(event, TradeOrder.Filled) else "partially_filled",
            filled_quantity=filled,
            average_fill_price=exact((paid + event.quantity * event.price) / filled),
            fill_count=order["fill_count"] + 1,
            updated_at=event.timestamp,
        )
        self._batch.update(conn, self.t.orders, oid)
        self._position(order["symbol"], Side(order["side"]), event, conn)

    def _position(self, symbol: str, side: Side, event: Any, conn: Connection) -> None:
        held = self._batch.get(conn, self.t.positions, symbol)
        if held is None:
            held = {
                "symbol": symbol,
                "quantity": Decimal(0),
                "average_cost": Decimal(0),
                "realized_pnl": Decimal(0),
                "fill_count": 0,
                "updated_at": event.timestamp,
            }
            self._batch.insert(self.t.positions, held)
        else:
            self._batch.update(conn, self.t.positions, symbol)
        signed = event.quantity if side is Side.BUY else -event.quantity
        quantity, cost, realized = apply_fill(
            held["quantity"], held["average_cost"], held["realized_pnl"], signed, event.price
        )
        held.update(
            quantity=quantity,
            average_cost=cost,
            realized_pnl=realized,
            fill_count=held["fill_count"] + 1,
            updated_at=event.timestamp,
        )


def _proposed_order(oid: str, event: Any) -> dict[str, Any]:
    return {
        "id": oid,
        "goal_id": str(event.goal_id) if event.goal_id else None,
        "symbol": event.symbol,
        "side": event.side,
        "quantity": event.quantity,
        "limit_price": event.limit_price,
        "status": "proposed",
        "filled_quantity": Decimal(0),
        "average_fill_price": None,
        "fill_count": 0,
        "broker_order_id": None,
        "risk_passed": None,
        "risk_violations": None,
        "reason": None,
        "proposed_at": event.timestamp,
        "updated_at": event.timestamp,
    }


def apply_fill(
    quantity: Decimal, average_cost: Decimal, realized: Decimal, signed: Decimal, price: Decimal
) -> tuple[Decimal, Decimal, Decimal]:
    """(quantity, average cost, realized P&L) after a fill of ``signed`` units at ``price``.

    Buys add and sells subtract. Adding to a position (or opening one) averages the cost;
    reducing it realizes the difference and keeps the cost; going through zero opens the rest
    at the fill's price.
    """
    new_quantity = quantity + signed
    if quantity == 0 or (quantity > 0) == (signed > 0):
        cost = (abs(quantity) * average_cost + abs(signed) * price) / abs(new_quantity)
        return new_quantity, exact(cost), realized
    closed = min(abs(signed), abs(quantity))
    direction = 1 if quantity > 0 else -1
    realized = exact(realized + closed * (price - average_cost) * direction)
    if new_quantity == 0:
        return new_quantity, Decimal(0), realized
    if (new_quantity > 0) != (quantity > 0):
        return new_quantity, exact(price), realized
    return new_quantity, average_cost, realized
