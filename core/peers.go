package core

// Peers returns the nodes in this node's DHT routing table, as
// "nodeID@host:port" contacts, closest buckets first. Empty before Start.
func (b *Backend) Peers() []string {
	if b.curDHT() == nil {
		return []string{}
	}
	cs := b.curDHT().Contacts()
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.String())
	}
	return out
}
