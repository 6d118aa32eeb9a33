//go:build race

package dhtsim

const raceEnabled = true

// raceSlowdown adds seconds to the RPC timeout under the race detector.
const raceSlowdown = 2
