from oms_platform.sql import Where


def test_where_skips_missing_filters_and_numbers_parameters_in_order():
    w = Where()
    w.add("status = {}", "pending")
    w.add("customer_id = {}", None)
    w.add("(created_at, id) < ({}, {})", "2026-01-01", "x")
    w.add_sql("NOT stuck")
    assert str(w) == " WHERE status = $1 AND (created_at, id) < ($2, $3) AND NOT stuck"
    assert w.param(50) == "$4"
    assert w.args == ["pending", "2026-01-01", "x", 50]


def test_where_without_filters_is_empty():
    assert str(Where()) == ""
