// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// geodns's XDP program: UDP to an address and port geodns answers on goes to the AF_XDP
// socket of the queue it arrived on; everything else (TCP, ICMP, ARP, neighbour discovery,
// other ports, IPv4 with options, fragments, IPv6 with extension headers) goes on to the
// kernel, untouched.
//
// Built by server/build.rs with clang from Debian (`-target bpf`), loaded by aya
// (server/src/xdp/program.rs), which fills both maps.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

// An address and port geodns answers on. IPv4 addresses take the first four bytes of `addr`;
// an all-zero `addr` is the wildcard (every address of that family).
struct target {
	__u8 addr[16];
	__u16 port; // network order
	__u8 family; // 4 or 6
	__u8 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct target);
	__type(value, __u8);
	__uint(max_entries, 64);
} TARGETS SEC(".maps");

// One AF_XDP socket per receive queue.
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 256);
} SOCKETS SEC(".maps");

struct vlan {
	__be16 tci;
	__be16 proto;
};

static __always_inline int ours(struct target *t)
{
	if (bpf_map_lookup_elem(&TARGETS, t))
		return 1;
	__builtin_memset(t->addr, 0, sizeof(t->addr));
	return bpf_map_lookup_elem(&TARGETS, t) != 0;
}

SEC("xdp")
int geodns_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct target t = {};
	struct udphdr *udp;
	void *l3;
	__u16 proto;

	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	proto = eth->h_proto;
	l3 = eth + 1;
	// Up to two VLAN tags (802.1Q, 802.1ad).
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		struct vlan *v = l3;
		if ((void *)(v + 1) > end)
			return XDP_PASS;
		proto = v->proto;
		l3 = v + 1;
	}
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = l3;
		if ((void *)(ip + 1) > end)
			return XDP_PASS;
		// Options and fragments are the kernel's to handle.
		if (ip->ihl != 5 || ip->protocol != IPPROTO_UDP ||
		    (ip->frag_off & bpf_htons(0x3fff)) != 0)
			return XDP_PASS;
		udp = (void *)(ip + 1);
		t.family = 4;
		__builtin_memcpy(t.addr, &ip->daddr, 4);
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;
		if ((void *)(ip6 + 1) > end)
			return XDP_PASS;
		// Extension headers (fragments among them) are the kernel's to handle.
		if (ip6->nexthdr != IPPROTO_UDP)
			return XDP_PASS;
		udp = (void *)(ip6 + 1);
		t.family = 6;
		__builtin_memcpy(t.addr, &ip6->daddr, 16);
	} else {
		return XDP_PASS;
	}
	if ((void *)(udp + 1) > end)
		return XDP_PASS;
	t.port = udp->dest;
	if (!ours(&t))
		return XDP_PASS;
	// No socket on this queue: the kernel answers through geodns's UDP sockets.
	return bpf_redirect_map(&SOCKETS, ctx->rx_queue_index, XDP_PASS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
