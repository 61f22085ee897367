/* The transmit-ceiling target: drops every frame in the driver, so that only
 * the sending side is measured. */
#include <linux/bpf.h>

__attribute__((section("xdp"), used)) int drop_all(struct xdp_md *ctx)
{
	return XDP_DROP;
}

char LICENSE[] __attribute__((section("license"), used)) = "GPL";
