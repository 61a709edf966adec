-- WAKE_WAITING (prepended by prelude.lua; KEYS[1] task hash, ARGV[1..4] as there; the
-- task id is a placeholder: this acts on the V1 budget, not on one task).
-- Maintenance, every round: wake tasks waiting for a V1 slot while slots are free. A
-- release wakes them at once; this catches slots freed otherwise (a reservation that
-- lapsed, a lease that ran out). Returns the ids woken (due for publishing).
return wake_waiting({})
