// SPDX-License-Identifier: GPL-2.0
/*
 * prtip's XDP program: steer replies to this scan into prtip's AF_XDP socket,
 * pass every other frame to the kernel untouched.
 *
 * A reply is IPv4 or IPv6 (whichever the scan uses) to one of the scanner's
 * addresses (up to PRTIP_MAX_SOURCES),
 * and answers the scan's probe type (its IP protocol in the configuration):
 * - TCP SYN: a SYN-ACK or an RST (its ACK bit set, as an answer to a SYN has)
 *   to one of the scan's source ports; with `segments` set (banners over
 *   AF_XDP, where prtip holds the connections itself), any TCP segment with
 *   its ACK bit set to one of those ports;
 * - UDP: a datagram to one of those ports;
 * - ICMP (ICMPv6) echo: an echo reply whose identifier is one of those ports;
 * - any: an ICMP (ICMPv6) destination-unreachable quoting a probe of that
 *   protocol from that address and one of those ports (an echo
 *   request with one of them as its identifier).
 * Pings to this host, ARP, neighbour discovery, the host's own connections (a
 * SYN or an ACK to a local service on one of those ports too) and
 * everything else go on to the kernel (XDP_PASS).
 * The parameters live in a one-entry array map set by prtip after loading.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

/* Helper calls by number (include/uapi/linux/bpf.h), so no libbpf headers are needed. */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) = (void *)51;

#define htons(x) ((__u16)__builtin_bswap16(x))

/*
 * linux/icmp.h drags in libc headers that do not build for BPF; this is all
 * we read. ICMPv6 shares the layout of these first eight bytes.
 */
#define ICMP_ECHOREPLY 0
#define ICMP_DEST_UNREACH 3
#define ICMP_ECHO 8
#define ICMPV6_DEST_UNREACH 1
#define ICMPV6_ECHO_REQUEST 128
#define ICMPV6_ECHO_REPLY 129
struct icmp_head {
	__u8 type;
	__u8 code;
	__u16 checksum;
	__u16 id;	/* an echo's identifier; unused in an error */
	__u16 sequence;
};

/* ProgramConfig in src/transport/xdp/abi.rs, whose layout build.rs passes in. */
#ifndef PRTIP_MAX_QUEUES
#error "build.rs passes PRTIP_MAX_QUEUES, PRTIP_MAX_SOURCES and the PRTIP_CONFIG_* layout from src/transport/xdp/abi.rs"
#endif

struct prtip_config {
	__u32 src_ip[PRTIP_MAX_SOURCES];	/* network byte order */
	__u16 port_lo;				/* host byte order */
	__u16 port_hi;
	__u32 src_ip6[PRTIP_MAX_SOURCES][4];	/* network byte order */
	__u8 family;				/* 4 or 6: which of the two arrays the scan uses */
	__u8 protocol;				/* the probes' IP protocol: TCP, UDP, ICMP or ICMPv6 */
	__u8 sources;				/* how many addresses of that array are in use */
	__u8 segments;				/* 1: every ACK-bearing TCP segment to our ports is ours */
};
#define LAID_OUT_AS_IN_RUST(field, offset) \
	_Static_assert(__builtin_offsetof(struct prtip_config, field) == (offset), \
		       "struct prtip_config." #field " is not where ProgramConfig has it")
_Static_assert(sizeof(struct prtip_config) == PRTIP_CONFIG_SIZE, "struct prtip_config and ProgramConfig differ in size");
LAID_OUT_AS_IN_RUST(src_ip, PRTIP_CONFIG_SRC_IP);
LAID_OUT_AS_IN_RUST(port_lo, PRTIP_CONFIG_PORT_LO);
LAID_OUT_AS_IN_RUST(port_hi, PRTIP_CONFIG_PORT_HI);
LAID_OUT_AS_IN_RUST(src_ip6, PRTIP_CONFIG_SRC_IP6);
LAID_OUT_AS_IN_RUST(family, PRTIP_CONFIG_FAMILY);
LAID_OUT_AS_IN_RUST(protocol, PRTIP_CONFIG_PROTOCOL);
LAID_OUT_AS_IN_RUST(sources, PRTIP_CONFIG_SOURCES);
LAID_OUT_AS_IN_RUST(segments, PRTIP_CONFIG_SEGMENTS);

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct prtip_config);
} prtip_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, PRTIP_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} prtip_xsks SEC(".maps");

static int our_port(const struct prtip_config *cfg, __u16 port_be)
{
	__u16 port = htons(port_be);
	return port >= cfg->port_lo && port <= cfg->port_hi;
}

/* A bounded loop over the scan's addresses: the verifier sees its end. */
static __attribute__((always_inline)) int our_ip4(const struct prtip_config *cfg, __u32 a)
{
	for (int i = 0; i < PRTIP_MAX_SOURCES && i < cfg->sources; i++)
		if (a == cfg->src_ip[i])
			return 1;
	return 0;
}

static __attribute__((always_inline)) int our_ip6(const struct prtip_config *cfg, const struct in6_addr *a)
{
	for (int i = 0; i < PRTIP_MAX_SOURCES && i < cfg->sources; i++)
		if (a->in6_u.u6_addr32[0] == cfg->src_ip6[i][0] && a->in6_u.u6_addr32[1] == cfg->src_ip6[i][1] &&
		    a->in6_u.u6_addr32[2] == cfg->src_ip6[i][2] && a->in6_u.u6_addr32[3] == cfg->src_ip6[i][3])
			return 1;
	return 0;
}

static __attribute__((always_inline)) int same_ip6(const struct in6_addr *a, const struct in6_addr *b)
{
	return a->in6_u.u6_addr32[0] == b->in6_u.u6_addr32[0] && a->in6_u.u6_addr32[1] == b->in6_u.u6_addr32[1] &&
	       a->in6_u.u6_addr32[2] == b->in6_u.u6_addr32[2] && a->in6_u.u6_addr32[3] == b->in6_u.u6_addr32[3];
}

/*
 * What a SYN gets back: a SYN-ACK, or an RST acknowledging it; and, where
 * prtip completes handshakes itself, the rest of those connections (the
 * kernel has no socket for them and would reset them).
 */
static __attribute__((always_inline)) int is_answer(const struct prtip_config *cfg, const struct tcphdr *tcp)
{
	return tcp->ack && (tcp->syn || tcp->rst || cfg->segments);
}

/*
 * Whether `l4` (of IP protocol `protocol`, ending by `end`) is a reply to
 * the scan's probes: TCP or UDP to one of its ports, an echo reply to one of
 * its identifiers. ICMP errors are handled by the callers.
 */
static __attribute__((always_inline)) int answers(const struct prtip_config *cfg, __u8 protocol, void *l4,
						  void *end)
{
	if (protocol != cfg->protocol)
		return 0;
	if (protocol == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;
		return (void *)(tcp + 1) <= end && our_port(cfg, tcp->dest) && is_answer(cfg, tcp);
	}
	if (protocol == IPPROTO_UDP) {
		struct udphdr *udp = l4;
		return (void *)(udp + 1) <= end && our_port(cfg, udp->dest);
	}
	struct icmp_head *icmp = l4;
	__u8 reply = protocol == IPPROTO_ICMP ? ICMP_ECHOREPLY : ICMPV6_ECHO_REPLY;
	return (void *)(icmp + 1) <= end && icmp->type == reply && our_port(cfg, icmp->id);
}

/*
 * Whether `l4`, quoted by an ICMP error, is one of the scan's probes (of
 * protocol `protocol`) from one of its ports: a TCP or UDP source port, or
 * an echo request's identifier.
 */
static __attribute__((always_inline)) int quotes_probe(const struct prtip_config *cfg, __u8 protocol, void *l4,
						       void *end)
{
	if (protocol != cfg->protocol)
		return 0;
	if (protocol == IPPROTO_TCP || protocol == IPPROTO_UDP) {
		__u16 *ports = l4;
		return (void *)(ports + 2) <= end && our_port(cfg, ports[0]);
	}
	struct icmp_head *icmp = l4;
	__u8 request = protocol == IPPROTO_ICMP ? ICMP_ECHO : ICMPV6_ECHO_REQUEST;
	return (void *)(icmp + 1) <= end && icmp->type == request && our_port(cfg, icmp->id);
}

static __attribute__((always_inline)) int steer_ip4(const struct prtip_config *cfg, struct iphdr *ip, void *end)
{
	if ((void *)(ip + 1) > end || !our_ip4(cfg, ip->daddr) || ip->ihl < 5)
		return 0;
	if (ip->frag_off & htons(0x1fff))
		return 0;
	void *l4 = (void *)ip + ip->ihl * 4;

	if (answers(cfg, ip->protocol, l4, end))
		return 1;
	if (ip->protocol != IPPROTO_ICMP)
		return 0;
	struct icmp_head *icmp = l4;
	if ((void *)(icmp + 1) > end || icmp->type != ICMP_DEST_UNREACH)
		return 0;
	struct iphdr *quoted = (void *)(icmp + 1);
	if ((void *)(quoted + 1) > end || quoted->saddr != ip->daddr || quoted->ihl != 5)
		return 0;
	return quotes_probe(cfg, quoted->protocol, quoted + 1, end);
}

/*
 * Only TCP, UDP or ICMPv6 directly after the fixed header: our probes carry
 * no extension headers, and neither do the answers to them.
 */
static __attribute__((always_inline)) int steer_ip6(const struct prtip_config *cfg, struct ipv6hdr *ip, void *end)
{
	if ((void *)(ip + 1) > end || !our_ip6(cfg, &ip->daddr))
		return 0;
	void *l4 = ip + 1;

	if (answers(cfg, ip->nexthdr, l4, end))
		return 1;
	if (ip->nexthdr != IPPROTO_ICMPV6)
		return 0;
	struct icmp_head *icmp = l4;
	if ((void *)(icmp + 1) > end || icmp->type != ICMPV6_DEST_UNREACH)
		return 0;
	struct ipv6hdr *quoted = (void *)(icmp + 1);
	if ((void *)(quoted + 1) > end || !same_ip6(&quoted->saddr, &ip->daddr))
		return 0;
	return quotes_probe(cfg, quoted->nexthdr, quoted + 1, end);
}

SEC("xdp")
int prtip_steer(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct prtip_config *cfg = bpf_map_lookup_elem(&prtip_config, &zero);
	if (!cfg)
		return XDP_PASS;

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	int steer = 0;
	if (eth->h_proto == htons(ETH_P_IP) && cfg->family == 4)
		steer = steer_ip4(cfg, (void *)(eth + 1), end);
	else if (eth->h_proto == htons(ETH_P_IPV6) && cfg->family == 6)
		steer = steer_ip6(cfg, (void *)(eth + 1), end);
	if (!steer)
		return XDP_PASS;
	return bpf_redirect_map(&prtip_xsks, ctx->rx_queue_index, XDP_PASS);
}

char LICENSE[] SEC("license") = "GPL";
