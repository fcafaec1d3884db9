"""Pure decisions: (job, observed children, now) -> Plan. No I/O, no kopf, no client."""
