-- Up Migration
-- The stock commit is no longer answered: an order stops awaiting it once it is
-- CONFIRMED. Orders confirmed by an earlier version and still awaiting the reply
-- stop waiting here; their CommitStock was sent already and inventory applies it
-- whenever it is delivered (a replayed dead letter included).
UPDATE orders
   SET awaiting = array_remove(awaiting, 'commit'),
       step_deadline = CASE WHEN awaiting = '{commit}' THEN NULL ELSE step_deadline END
 WHERE 'commit' = ANY (awaiting);

-- Down Migration
-- Nothing to restore: an earlier version treats an order that awaits nothing as settled.
