import type { DescService } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";

/** A service descriptor with its implementation, ready to be served. */
export interface ServiceBinding {
  service: DescService;
  impl: Partial<ServiceImpl<DescService>>;
}

/** Binds an implementation to its service descriptor, checking the implementation's types. */
export function bind<S extends DescService>(service: S, impl: Partial<ServiceImpl<S>>): ServiceBinding {
  return { service, impl: impl as Partial<ServiceImpl<DescService>> };
}
