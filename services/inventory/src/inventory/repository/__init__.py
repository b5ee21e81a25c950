"""SQL of inventory, split by table group; used as one module (`from inventory import repository as repo`)."""

from inventory.repository.reservations import (
    CommitState,
    NewReservation,
    ReserveState,
    get_reservation,
    has_waiting,
    insert_released,
    insert_reservations,
    load_for_commit,
    load_for_reserve,
    mark_released,
    mark_served,
    set_allocations,
    set_waiting_cause,
    waiting_backorders,
)
from inventory.repository.stock import (
    INVENTORY_LOCK,
    change_stock,
    claim_operation,
    get_sku_settings,
    list_locations,
    location_exists,
    lock_inventory,
    lock_stock,
    low_stock_crossings,
    movements,
    set_on_hand,
    sku_known,
    stock_of,
    upsert_location,
    upsert_sku_settings,
)

__all__ = [
    "CommitState", "INVENTORY_LOCK", "NewReservation", "ReserveState", "change_stock", "claim_operation",
    "get_reservation", "get_sku_settings", "has_waiting", "insert_released", "insert_reservations",
    "list_locations", "load_for_commit", "load_for_reserve", "location_exists", "lock_inventory", "lock_stock",
    "low_stock_crossings", "mark_released", "mark_served", "movements", "set_allocations", "set_on_hand",
    "set_waiting_cause", "sku_known", "stock_of", "upsert_location", "upsert_sku_settings", "waiting_backorders",
]
