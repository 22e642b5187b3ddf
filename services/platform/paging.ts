import { Code, ConnectError } from "@connectrpc/connect";
import { z } from "zod";

export const defaultPageSize = 20;

export function pageSize(requested: number): number {
  return requested > 0 ? requested : defaultPageSize;
}

const maxBigint = 2n ** 63n - 1n;

/**
 * The position of pages read newest first by a bigint sequence: the last row's sequence.
 * One a bigint cannot hold is refused here, not by Postgres — which would fail the whole
 * batched statement the request shares with others.
 */
export const beforeSequence = z.object({ before: z.string().regex(/^\d{1,19}$/).refine((value) => BigInt(value) <= maxBigint) });

/**
 * The bound of a page read newest first: `seq < ${beforePosition("$2::bigint")}`, where no
 * position (NULL) reads from the newest row. A bound rather than `($2 IS NULL OR seq < $2)`:
 * it is an index condition also in a prepared statement's generic plan, which checks the
 * other form against every newer row of the customer before the page's first.
 */
export function beforePosition(position: string): string {
  return `coalesce(${position}, ${maxBigint})`;
}

/** Opaque page tokens: the position after the last item, as base64url JSON. */
export function encodePageToken(position: Record<string, string | number>): string {
  return Buffer.from(JSON.stringify(position)).toString("base64url");
}

export function decodePageToken<S extends z.ZodType>(token: string, schema: S): z.infer<S> | undefined {
  if (token === "") return undefined;
  try {
    return schema.parse(JSON.parse(Buffer.from(token, "base64url").toString("utf8")));
  } catch {
    throw new ConnectError("page_token is not a token returned by this method", Code.InvalidArgument);
  }
}

/**
 * Fetches one row more than the page holds to learn whether another page follows.
 * Returns the page and the next token (empty on the last page).
 */
export function paginate<T>(rows: T[], size: number, position: (last: T) => Record<string, string | number>): { items: T[]; nextPageToken: string } {
  const items = rows.slice(0, size);
  const last = items.at(-1);
  return { items, nextPageToken: rows.length > size && last !== undefined ? encodePageToken(position(last)) : "" };
}
