// Package kafkacluster starts a real Apache Kafka cluster for failover tests:
// three KRaft nodes (each broker and controller) on free 127.0.0.1 ports,
// topics at replication factor 3 with min.insync.replicas=2. Nodes are OS
// processes that a test can SIGKILL, stop, pause and restart from their log
// directories. With [WithProxies], every connection to a node goes through
// a proxy that can lose requests or their answers. The nodes are started by
// scripts/kafka/node.sh, the script `make services` uses, from the jars it
// keeps in .cache/kafka/libs.
package kafkacluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/outboxkit/outbox/internal/testenv"
)

// Cluster is a running cluster. Its methods are safe for concurrent use.
type Cluster struct {
	t      testing.TB
	dir    string
	id     string
	voters string
	nodes  []*node
}

type node struct {
	mu          sync.Mutex
	id          int
	dir         string
	port, cport int
	pid         int
	// proxy, when set, is where clients connect: the node advertises it.
	proxy *proxy
}

// addr returns the address clients connect to.
func (nd *node) addr() string {
	if nd.proxy != nil {
		return "127.0.0.1:" + strconv.Itoa(nd.proxy.port())
	}
	return "127.0.0.1:" + strconv.Itoa(nd.port)
}

// Option changes how Start starts a cluster.
type Option func(*options)

type options struct{ proxies bool }

// WithProxies puts a proxy in front of every node (see LoseRequests and
// LoseResponses).
func WithProxies() Option { return func(o *options) { o.proxies = true } }

// Start starts a cluster of n nodes (n is 3 for the failover tests) and
// waits until every node serves; the cluster is killed at the end of the
// test. Under CI a cluster that cannot start fails the test; elsewhere it
// skips (no Java, say).
func Start(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if _, err := exec.LookPath("java"); err != nil {
		testenv.Unavailable(t, "java (for the Kafka cluster)", err)
	}
	c := &Cluster{t: t, dir: t.TempDir()}
	id, err := script("cluster-id")
	if err != nil {
		testenv.Unavailable(t, "Kafka jars", err)
	}
	c.id = strings.TrimSpace(id)
	ports := testenv.FreePorts(t, 3*n) // a node's, its controller's, its proxy's
	var voters []string
	for i := range n {
		nd := &node{id: i + 1, dir: filepath.Join(c.dir, "node-"+strconv.Itoa(i+1)), port: ports[3*i], cport: ports[3*i+1]}
		if o.proxies {
			px := newProxy(ports[3*i+2], "127.0.0.1:"+strconv.Itoa(nd.port))
			t.Cleanup(px.close)
			nd.proxy = px
		}
		c.nodes = append(c.nodes, nd)
		voters = append(voters, fmt.Sprintf("%d@127.0.0.1:%d", nd.id, nd.cport))
	}
	c.voters = strings.Join(voters, ",")
	t.Cleanup(c.killAll)
	for i := range c.nodes {
		c.launch(i)
	}
	for i := range c.nodes {
		c.wait(i)
	}
	c.waitHealthy()
	if version, err := testenv.KafkaVersion(c.Brokers()); err == nil {
		t.Logf("Kafka cluster: %s at %s", version, strings.Join(c.Brokers(), ","))
	}
	return c
}

// Brokers returns the nodes' addresses, the live ones and the dead alike.
func (c *Cluster) Brokers() []string {
	out := make([]string, len(c.nodes))
	for i, nd := range c.nodes {
		out[i] = nd.addr()
	}
	return out
}

// LoseResponses makes node i's proxy lose the responses to requests with the
// Kafka API key key (0 is Produce, 26 EndTxn) until restore is called: the
// node handles each request, the client never hears of it, and nothing more
// goes through that connection until the client or the node closes it. lost
// is closed at the first. The cluster must have been started WithProxies.
func (c *Cluster) LoseResponses(i int, key int16) (lost <-chan struct{}, restore func()) {
	return c.nodes[i].proxy.arm(key, true)
}

// LoseRequests is LoseResponses for the requests themselves: the node never
// sees them.
func (c *Cluster) LoseRequests(i int, key int16) (lost <-chan struct{}, restore func()) {
	return c.nodes[i].proxy.arm(key, false)
}

// Stop stops node i with SIGTERM, as a rolling restart does: the node hands
// its leaderships over and shuts down cleanly. It waits until the node is
// gone, and kills it if it is not within a minute.
func (c *Cluster) Stop(i int) {
	nd := c.nodes[i]
	nd.mu.Lock()
	pid := nd.pid
	nd.mu.Unlock()
	if pid == 0 {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(time.Minute)
	for alive(pid) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	c.Kill(i)
}

// NodeID returns the Kafka node ID of node i (counted from 0).
func (c *Cluster) NodeID(i int) int32 { return int32(c.nodes[i].id) }

// Kill sends SIGKILL to node i and waits until it is gone.
func (c *Cluster) Kill(i int) {
	nd := c.nodes[i]
	nd.mu.Lock()
	pid := nd.pid
	nd.pid = 0
	nd.mu.Unlock()
	if pid == 0 {
		return
	}
	if nd.proxy != nil {
		nd.proxy.down()
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for alive(pid) {
		time.Sleep(20 * time.Millisecond)
	}
}

// Pause stops node i with SIGSTOP and waits until it is stopped: it keeps
// its connections but answers nothing, as a broker behind a dropped route.
// Resume undoes it.
func (c *Cluster) Pause(i int) {
	c.signal(i, syscall.SIGSTOP)
	nd := c.nodes[i]
	nd.mu.Lock()
	pid := nd.pid
	nd.mu.Unlock()
	for pid != 0 && alive(pid) && state(pid) != 'T' {
		time.Sleep(time.Millisecond)
	}
}

// Resume continues a paused node.
func (c *Cluster) Resume(i int) { c.signal(i, syscall.SIGCONT) }

func (c *Cluster) signal(i int, sig syscall.Signal) {
	nd := c.nodes[i]
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.pid != 0 {
		_ = syscall.Kill(nd.pid, sig)
	}
}

// Restart starts a killed node i again from its log directory and waits
// until it serves.
func (c *Cluster) Restart(i int) {
	c.launch(i)
	c.wait(i)
}

// Running reports whether node i runs (it may be paused).
func (c *Cluster) Running(i int) bool {
	nd := c.nodes[i]
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.pid != 0
}

// CreateTopic creates a topic of its own with the given partitions at
// replication factor 3 (the cluster's default), waits until every partition
// has a leader, and returns its name.
func (c *Cluster) CreateTopic(partitions int32) string {
	c.t.Helper()
	topic := testenv.Table("outbox_cluster")
	adm, closeAdm := c.admin()
	defer closeAdm()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := adm.CreateTopic(ctx, partitions, -1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		c.t.Fatalf("create topic %s: %v", topic, err)
	}
	for p := range partitions {
		c.Leader(topic, p)
	}
	return topic
}

// Leader returns the index of the node that leads a partition, waiting up to
// a minute for one.
func (c *Cluster) Leader(topic string, partition int32) int {
	c.t.Helper()
	adm, closeAdm := c.admin()
	defer closeAdm()
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		md, err := adm.Metadata(ctx, topic)
		cancel()
		if err == nil {
			if p, ok := md.Topics[topic].Partitions[partition]; ok && p.Err == nil && p.Leader >= 0 {
				for i, nd := range c.nodes {
					if int32(nd.id) == p.Leader && c.Running(i) {
						return i
					}
				}
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("no leader for %s/%d after a minute (last error %v)", topic, partition, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// WaitInSync waits, up to two minutes, until every replica of every
// partition of topic is in sync, as a rolling restart waits before it stops
// the next node.
func (c *Cluster) WaitInSync(topic string) {
	c.t.Helper()
	adm, closeAdm := c.admin()
	defer closeAdm()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		md, err := adm.Metadata(ctx, topic)
		cancel()
		synced := err == nil && len(md.Topics[topic].Partitions) > 0
		if synced {
			for _, p := range md.Topics[topic].Partitions {
				synced = synced && p.Err == nil && len(p.ISR) == len(p.Replicas)
			}
		}
		if synced {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: replicas not in sync after two minutes (last error %v)", topic, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TxnCoordinator returns the index of the node that coordinates the
// transactions of a transactional ID, waiting up to a minute for one.
func (c *Cluster) TxnCoordinator(txnID string) int {
	c.t.Helper()
	adm, closeAdm := c.admin()
	defer closeAdm()
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp := adm.FindTxnCoordinators(ctx, txnID)
		cancel()
		r, ok := resp[txnID]
		if ok && r.Err == nil {
			for i, nd := range c.nodes {
				if int32(nd.id) == r.NodeID && c.Running(i) {
					return i
				}
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("no coordinator for %s after a minute (%v)", txnID, r.Err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *Cluster) admin() (*kadm.Client, func()) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.liveBrokers()...))
	if err != nil {
		c.t.Fatal(err)
	}
	return kadm.NewClient(cl), cl.Close
}

func (c *Cluster) liveBrokers() []string {
	var out []string
	for i, b := range c.Brokers() {
		if c.Running(i) {
			out = append(out, b)
		}
	}
	return out
}

// waitHealthy waits until the brokers answer as a cluster: every node
// registered, so that topics get all their replicas.
func (c *Cluster) waitHealthy() {
	c.t.Helper()
	adm, closeAdm := c.admin()
	defer closeAdm()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		md, err := adm.BrokerMetadata(ctx)
		cancel()
		if err == nil && len(md.Brokers) == len(c.nodes) {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the cluster did not come up within 2 minutes (metadata %v, err %v)", md.Brokers, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (c *Cluster) launch(i int) {
	c.t.Helper()
	nd := c.nodes[i]
	aport := nd.port
	if nd.proxy != nil {
		aport = nd.proxy.port()
	}
	out, err := script("start", nd.dir, strconv.Itoa(nd.id), strconv.Itoa(nd.port), strconv.Itoa(nd.cport),
		c.voters, strconv.Itoa(len(c.nodes)), c.id, strconv.Itoa(aport))
	if err != nil {
		c.t.Fatalf("start Kafka node %d: %v", nd.id, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		c.t.Fatalf("start Kafka node %d: %q is no PID", nd.id, out)
	}
	nd.mu.Lock()
	nd.pid = pid
	nd.mu.Unlock()
}

// wait waits until node i serves, and then opens its proxy.
func (c *Cluster) wait(i int) {
	c.t.Helper()
	nd := c.nodes[i]
	if out, err := script("wait", nd.dir, "180"); err != nil {
		c.t.Fatalf("Kafka node %d: %v %s", nd.id, err, out)
	}
	if nd.proxy != nil {
		if err := nd.proxy.up(); err != nil {
			c.t.Fatalf("proxy of Kafka node %d: %v", nd.id, err)
		}
	}
}

func (c *Cluster) killAll() {
	for i := range c.nodes {
		c.Resume(i)
		c.Kill(i)
	}
}

// script runs scripts/kafka/node.sh with args and returns its standard output.
func script(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(repoRoot(), "scripts", "kafka", "node.sh"), args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("node.sh %s: %w: %s", args[0], err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// state returns the state letter of pid in /proc (R, S, T, Z, ...), or 0.
func state(pid int) byte {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The state follows the command name in parentheses.
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2]
	}
	return 0
}

// alive reports whether pid runs. The nodes are not this process's children
// (node.sh detaches them), and a container's init may leave them zombies, so
// /proc tells rather than kill(pid, 0).
func alive(pid int) bool {
	st := state(pid)
	return st != 0 && st != 'Z' && st != 'X'
}
