-- Up Migration
-- An order's history lives in its row: a jsonb array of {from, to, reason, at}, oldest first.
-- It has at most six entries, is only ever read whole with its order, and each one is written
-- by a statement that updates the order's row anyway. As rows of a table of their own, each
-- entry cost an insert, a B-tree entry and a foreign-key check, four times a saga.
ALTER TABLE orders ADD COLUMN history jsonb NOT NULL DEFAULT '[]';
-- Rewrites every order (see the README's upgrade notes for what that takes on a large table).
UPDATE orders o
   SET history = h.entries
  FROM (SELECT order_id, jsonb_agg(jsonb_build_object('from', from_status, 'to', to_status, 'reason', reason, 'at', at) ORDER BY id) AS entries
          FROM order_history GROUP BY order_id) h
 WHERE h.order_id = o.order_id;
-- order_history stays for order replicas of the earlier version, which run beside the new ones
-- during a rollout and still write their entries there: each of their statements' entries is
-- appended to the orders' rows as it ends. Nothing reads the table any more; a later version
-- drops it.
CREATE FUNCTION order_history_into_rows() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
  UPDATE orders o
     SET history = o.history || a.entries
    FROM (SELECT order_id, jsonb_agg(jsonb_build_object('from', from_status, 'to', to_status, 'reason', reason, 'at', at) ORDER BY id) AS entries
            FROM added GROUP BY order_id) a
   WHERE a.order_id = o.order_id;
  RETURN NULL;
END
$$;
CREATE TRIGGER order_history_into_rows AFTER INSERT ON order_history
  REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION order_history_into_rows();

-- Down Migration
DROP TRIGGER order_history_into_rows ON order_history;
DROP FUNCTION order_history_into_rows();
TRUNCATE order_history;
INSERT INTO order_history (order_id, from_status, to_status, reason, at)
SELECT o.order_id, h.e->>'from', h.e->>'to', h.e->>'reason', (h.e->>'at')::timestamptz
  FROM orders o CROSS JOIN LATERAL jsonb_array_elements(o.history) WITH ORDINALITY AS h(e, n)
 ORDER BY o.seq, h.n;
ALTER TABLE orders DROP COLUMN history;
