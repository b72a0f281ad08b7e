DELETE FROM outbox_audit WHERE table_name = '{{.Table}}';
