package testenv

import (
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"testing"
)

// Ports that FreePorts hands out lie below the kernel's ephemeral range
// (32768 and up by default). A port the kernel picked, closed again and
// bound by a server seconds later was sometimes taken meanwhile as the
// source port of some connection (a Kafka node then failed to start beside
// a second make test); no connection takes a port from below that range.
const (
	portMin = 20000
	portMax = 32000
)

// FreePorts returns n distinct ports on 127.0.0.1 that were free a moment
// ago, for servers and proxies that listen later, or again after a stop.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries == 1000 {
			t.Fatalf("no free port in [%d, %d) after 1000 tries", portMin, portMax)
		}
		port := portMin + rand.IntN(portMax-portMin)
		if slices.Contains(ports, port) {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		l.Close()
		ports = append(ports, port)
	}
	return ports
}
