// The floor: an XDP program that answers every UDP query to port 5399 by sending it back with
// the addresses and ports swapped and the QR bit set (no user space, no answer).
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

SEC("xdp")
int reflect(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP)) return XDP_PASS;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > end || ip->ihl != 5 || ip->protocol != IPPROTO_UDP) return XDP_PASS;
    struct udphdr *udp = (void *)(ip + 1);
    if ((void *)(udp + 1) > end || udp->dest != bpf_htons(5399)) return XDP_PASS;
    unsigned char *dns = (void *)(udp + 1);
    if ((void *)(dns + 12) > end) return XDP_DROP;
    unsigned char mac[ETH_ALEN];
    __builtin_memcpy(mac, eth->h_source, ETH_ALEN);
    __builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
    __builtin_memcpy(eth->h_dest, mac, ETH_ALEN);
    __be32 a = ip->saddr; ip->saddr = ip->daddr; ip->daddr = a;
    __be16 p = udp->source; udp->source = udp->dest; udp->dest = p;
    udp->check = 0;
    dns[2] |= 0x80;
    return XDP_TX;
}

SEC("xdp")
int pass(struct xdp_md *ctx) { return XDP_PASS; }

char LICENSE[] SEC("license") = "GPL";
