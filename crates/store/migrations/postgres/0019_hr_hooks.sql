-- HR systems deliver lifecycle events to /hooks/hr/{tenant} (issue 6): the
-- deliveries table accepts the new source.

ALTER TABLE hook_deliveries DROP CONSTRAINT hook_deliveries_source_check;
ALTER TABLE hook_deliveries ADD CONSTRAINT hook_deliveries_source_check
    CHECK (source IN ('connectwise', 'autotask', 'halopsa', 'generic', 'hr'));
