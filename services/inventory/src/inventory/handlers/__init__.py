"""Use cases of inventory: the saga's commands (reservations.py, movements.py), operator calls
(operator.py), and what they share (effects.py: emitted messages, backorder serving, LowStock)."""
