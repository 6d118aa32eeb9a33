//go:build race

package dht

// raceSlowdown multiplies the network tests' RPC timeout: the race
// detector runs this code several times slower, and on two cores a 50-node
// network's answers then pass 1 s often enough that a writer marks one of
// the nearest nodes dead and leaves it out of its lookups for deadTTL.
const raceSlowdown = 2
