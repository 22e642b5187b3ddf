import type { ServiceImpl } from "@connectrpc/connect";
import type { NotificationService } from "../../gen/orderflow/notification/v1/notification_pb.js";
import { beforeSequence, decodePageToken, pageSize, paginate } from "../platform/paging.js";
import type { NotificationHub } from "./hub.js";
import { type NotificationStore, toNotification } from "./store.js";


export function notificationApi({ store, hub }: { store: NotificationStore; hub: NotificationHub }): Partial<ServiceImpl<typeof NotificationService>> {
  return {
    async listNotifications(request) {
      const size = pageSize(request.pageSize);
      const before = decodePageToken(request.pageToken, beforeSequence)?.before;
      const rows = await store.list(request.customerId, size + 1, before);
      const page = paginate(rows, size, (last) => ({ before: last.seq }));
      return { notifications: page.items.map(toNotification), nextPageToken: page.nextPageToken };
    },

    /** Each notification recorded for the customer after the call starts; ends when the client cancels or the server stops. */
    async *watchNotifications(request, context) {
      for await (const notification of hub.subscribe(request.customerId, context.signal)) yield { notification };
    },
  };
}
