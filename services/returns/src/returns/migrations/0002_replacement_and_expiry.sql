-- An exchange's replacement order's status changes find their return by the replacement's id.
CREATE UNIQUE INDEX returns_replacement ON returns (replacement_order_id) WHERE replacement_order_id IS NOT NULL;
