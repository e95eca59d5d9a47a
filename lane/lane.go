package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

const (
	shutdownGrace = 5 * time.Second
	// How many claimed verdict ids are remembered after they stop pending, so that a `revoke` crossing a `placed` on
	// the channel is answered "claimed" rather than "gone" (which would release a reservation in use).
	claimedMemory = 1 << 16
)

type slot struct{ apiKey, symbol, side string }

// Lane is the bot-facing server and its side of the control channel.
type Lane struct {
	log *log.Logger

	ctrlMu   sync.Mutex // serializes writes on the control channel
	ctrl     net.Conn
	closed   chan struct{} // closed when the control channel ends: nothing more can be reported
	stopOnce sync.Once     // Python asked to stop (the "stop" message)
	hello    helloMsg
	ex       *exchange
	intents  *os.File
	seen     *seenFilter
	forward  http.Handler
	server   *http.Server

	mu       sync.Mutex
	verdicts map[slot]*verdict
	byID     map[int64]*verdict
	replaced []int64                 // replaced unclaimed verdicts, reported `gone` in the next `revoked`
	pending  map[int64]chan struct{} // claimed and not yet adopted or resolved; closed when it stops pending
	claimed  map[int64]struct{}      // recently claimed ids (with claimedRing, the oldest forgotten first)
	ring     []int64
	ringNext int
	// A bot id first seen in a request still being handled, or in an order sent and not yet booked: another request
	// naming it waits, so Python never gets an id whose first order it has not heard of yet (a retry sent at once
	// on another connection would otherwise be a second order). byVerdict links a claimed order to its bot's id.
	inProgress map[string]chan struct{}
	byVerdict  map[int64]string
	waiting    map[int64]chan resolvedMsg // `resolve` req -> the bot's request waiting for Python's answer
	waitVid    map[int64]int64            // `resolve` req -> the verdict id it settles
	nextReq    int64

	// Tests only: the exchange's CA (httptest's TLS server), and a clock.
	rootCAs *x509.CertPool
	now     func() time.Time
}

func newLane(logger *log.Logger) *Lane {
	return &Lane{
		log:        logger,
		closed:     make(chan struct{}),
		seen:       newSeenFilter(),
		verdicts:   map[slot]*verdict{},
		byID:       map[int64]*verdict{},
		pending:    map[int64]chan struct{}{},
		claimed:    map[int64]struct{}{},
		ring:       make([]int64, claimedMemory),
		waiting:    map[int64]chan resolvedMsg{},
		inProgress: map[string]chan struct{}{},
		byVerdict:  map[int64]string{},
		waitVid:    map[int64]int64{},
		now:        time.Now,
	}
}

// run serves until the control channel ends, then drains the server and returns. An error means the lane never
// became ready (a bad hello, an address it could not bind).
func (l *Lane) run(ctrl net.Conn) error {
	l.ctrl = ctrl
	defer ctrl.Close()
	reader := bufio.NewReaderSize(ctrl, 64<<10)
	line, err := reader.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("control channel: no hello: %v", err)
	}
	var kind struct {
		T string `json:"t"`
	}
	if json.Unmarshal(line, &kind) != nil || kind.T != "hello" {
		return errors.New("control channel: the first message is not a hello")
	}
	if err := json.Unmarshal(line, &l.hello); err != nil {
		return fmt.Errorf("hello: %v", err)
	}
	listener, url, err := l.start()
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- l.server.Serve(listener) }()
	if err := l.send(readyMsg{T: "ready", URL: url}); err != nil {
		l.server.Close()
		return fmt.Errorf("control channel: %v", err)
	}

	for {
		line, err := reader.ReadBytes('\n')
		if len(line) > 0 {
			l.dispatch(line)
		}
		if err != nil {
			if err != io.EOF && !errors.Is(err, net.ErrClosed) { // closed by stop(): not news
				l.log.Printf("control channel: %v", err)
			}
			break
		}
	}

	// Python is gone or stopping: no new claims (they could not be reported), waiters answered, then drain.
	l.mu.Lock()
	close(l.closed)
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := l.server.Shutdown(ctx); err != nil {
		l.server.Close()
	}
	<-served
	l.intents.Close()
	return nil
}

// start checks the hello, opens the intent log, binds, and prepares the server; the URL bots use.
func (l *Lane) start() (net.Listener, string, error) {
	h := &l.hello
	if h.Upstream == "" || h.IntentLog == "" {
		return nil, "", errors.New("hello: upstream and intent_log are required")
	}
	if h.Server.MaxConnections <= 0 || h.Server.MaxHeadBytes <= 0 || h.Server.MaxBodyBytes <= 0 ||
		h.Server.IdleTimeoutS <= 0 || h.Server.RequestTimeoutS <= 0 {
		return nil, "", errors.New("hello: server limits must be above 0")
	}
	ex, err := newExchange(&h.Exchange, l.rootCAs)
	if err != nil {
		return nil, "", fmt.Errorf("hello: exchange: %v", err)
	}
	l.ex = ex
	l.intents, err = os.OpenFile(h.IntentLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, "", fmt.Errorf("hello: intent log: %v", err)
	}
	l.forward = newForwarder(h.Upstream, l.log)

	listener, url, err := listen(h.Listen)
	if err != nil {
		l.intents.Close()
		return nil, "", err
	}
	requestTimeout := seconds(h.Server.RequestTimeoutS)
	l.server = &http.Server{
		Handler: l,
		// The body's share of the request timeout is enforced in the handler: a ReadTimeout would also cancel the
		// context of a request still waiting (on the barrier, on Python) past it.
		ReadHeaderTimeout: requestTimeout,
		IdleTimeout:       seconds(h.Server.IdleTimeoutS),
		MaxHeaderBytes:    h.Server.MaxHeadBytes,
		ErrorLog:          l.log,
	}
	go l.ex.warm()
	return newLimitListener(listener, h.Server.MaxConnections), url, nil
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func listen(cfg listenConfig) (net.Listener, string, error) {
	if cfg.Unix != "" {
		if info, err := os.Lstat(cfg.Unix); err == nil {
			if info.Mode()&os.ModeSocket == 0 {
				return nil, "", fmt.Errorf("listen: %s exists and is not a socket", cfg.Unix)
			}
			os.Remove(cfg.Unix) // a stale socket of an earlier run
		}
		// The socket is born without group-other bits rather than chmod'ed after a window in which anyone could
		// connect. Nothing else runs yet, so the process-wide umask is ours to change.
		old := syscall.Umask(0o117)
		listener, err := net.Listen("unix", cfg.Unix)
		syscall.Umask(old)
		if err != nil {
			return nil, "", fmt.Errorf("listen: %v", err)
		}
		if err := os.Chmod(cfg.Unix, 0o660); err != nil {
			listener.Close()
			return nil, "", fmt.Errorf("listen: %v", err)
		}
		return listener, "unix:" + cfg.Unix, nil
	}
	listener, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)))
	if err != nil {
		return nil, "", fmt.Errorf("listen: %v", err)
	}
	addr := listener.Addr().(*net.TCPAddr)
	ip := addr.IP
	if ip.IsUnspecified() {
		// Bound to every address: the loopback of the family asked for. Go binds "0.0.0.0" dual-stack and reports
		// "::", so the configured host decides, not the bound address.
		if configured := net.ParseIP(cfg.Host); configured != nil && configured.To4() == nil {
			ip = net.IPv6loopback
		} else {
			ip = net.IPv4(127, 0, 0, 1)
		}
	}
	return listener, "http://" + net.JoinHostPort(ip.String(), strconv.Itoa(addr.Port)), nil
}

// send writes one message on the control channel.
func (l *Lane) send(message any) error {
	data, err := json.Marshal(message)
	if err != nil {
		return err
	}
	data = append(data, '\n')
	l.ctrlMu.Lock()
	defer l.ctrlMu.Unlock()
	_, err = l.ctrl.Write(data)
	return err
}

func (l *Lane) isClosed() bool {
	select {
	case <-l.closed:
		return true
	default:
		return false
	}
}

// dispatch handles one message from Python, on the reader goroutine.
func (l *Lane) dispatch(line []byte) {
	var kind struct {
		T string `json:"t"`
	}
	if err := json.Unmarshal(line, &kind); err != nil {
		l.log.Printf("control channel: unreadable message: %v", err)
		return
	}
	var err error
	switch kind.T {
	case "ids":
		var m idsMsg
		if err = json.Unmarshal(line, &m); err == nil {
			for _, id := range m.IDs {
				l.seen.testAndAdd(id)
			}
		}
	case "verdict":
		var v verdict
		if err = json.Unmarshal(line, &v); err == nil {
			if err = v.check(); err == nil {
				l.store(&v)
			} else {
				// Never usable: a later `revoke` of it is answered `gone`.
				err = fmt.Errorf("verdict %d refused: %v", v.ID, err)
			}
		}
	case "revoke":
		var m revokeMsg
		if err = json.Unmarshal(line, &m); err == nil {
			err = l.send(l.revoke(m))
		}
	case "key":
		var m keyMsg
		if err = json.Unmarshal(line, &m); err == nil {
			l.ex.setKey(m.APIKey, m.Secret)
			err = l.send(ackMsg{T: "ack", Req: m.Req})
		}
	case "adopted":
		var m adoptedMsg
		if err = json.Unmarshal(line, &m); err == nil {
			l.mu.Lock()
			l.unpend(m.ID)
			l.mu.Unlock()
		}
	case "resolved":
		var m resolvedMsg
		if err = json.Unmarshal(line, &m); err == nil {
			l.mu.Lock()
			waiter, ok := l.waiting[m.Req]
			if ok {
				delete(l.waiting, m.Req)
				l.unpend(l.waitVid[m.Req])
				delete(l.waitVid, m.Req)
			}
			l.mu.Unlock()
			if ok {
				waiter <- m // buffered: the bot's request may be gone, the dispatcher never blocks
			} else {
				err = fmt.Errorf("resolved %d: no such resolve", m.Req)
			}
		}
	case "trim":
		var m trimMsg
		if err = json.Unmarshal(line, &m); err == nil {
			err = l.send(trimmedMsg{T: "trimmed", Req: m.Req, Done: l.trim()})
		}
	case "stop":
		// Python is stopping: the requests in hand finish (their orders reported as usual, so the reader keeps
		// dispatching meanwhile), then the channel closes and run() ends.
		l.stopOnce.Do(func() { go l.stop() })
	default:
		err = fmt.Errorf("unknown message %q", kind.T)
	}
	if err != nil {
		l.log.Printf("control channel: %s: %v", kind.T, err)
	}
}

// trim empties the intent log when no order is pending: every order it holds is then booked by Python (an order is
// claimed, and pending, before its record is written, and pending until Python has booked it). Appends go on at the
// new end (O_APPEND).
func (l *Lane) trim() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pending) > 0 {
		return false
	}
	if err := l.intents.Truncate(0); err != nil {
		l.log.Printf("intent log: trim: %v", err)
		return false
	}
	return true
}

// stop drains the server while the control channel stays open, then closes the channel.
func (l *Lane) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := l.server.Shutdown(ctx); err != nil {
		l.server.Close()
	}
	l.ctrl.Close()
}

// store keeps a verdict, one per (api_key, symbol, side); an unclaimed one it replaces is reported gone later.
func (l *Lane) store(v *verdict) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.wasClaimed(v.ID) {
		// A verdict id is single-use: one already claimed is never stored again.
		l.log.Printf("control channel: verdict %d: already claimed, ignored", v.ID)
		return
	}
	key := slot{v.APIKey, v.Symbol, v.Side}
	if old := l.verdicts[key]; old != nil {
		delete(l.byID, old.ID)
		if old.ID != v.ID {
			l.replaced = append(l.replaced, old.ID)
		}
	}
	if other := l.byID[v.ID]; other != nil {
		// The same id in another slot: only the newest stands.
		delete(l.verdicts, slot{other.APIKey, other.Symbol, other.Side})
	}
	l.verdicts[key] = v
	l.byID[v.ID] = v
}

func (l *Lane) revoke(m revokeMsg) revokedMsg {
	l.mu.Lock()
	defer l.mu.Unlock()
	answer := revokedMsg{T: "revoked", Req: m.Req, Gone: []int64{}, Claimed: []int64{}}
	listed := map[int64]bool{}
	for _, id := range m.IDs {
		if listed[id] {
			continue
		}
		listed[id] = true
		if l.wasClaimed(id) {
			answer.Claimed = append(answer.Claimed, id)
			continue
		}
		// Present (expired or not) or unknown: either way the lane will never use it.
		if v := l.byID[id]; v != nil {
			delete(l.byID, id)
			delete(l.verdicts, slot{v.APIKey, v.Symbol, v.Side})
		}
		answer.Gone = append(answer.Gone, id)
	}
	for _, id := range l.replaced {
		if !listed[id] {
			listed[id] = true
			answer.Gone = append(answer.Gone, id)
		}
	}
	l.replaced = nil
	return answer
}

// wasClaimed: with l.mu held.
func (l *Lane) wasClaimed(id int64) bool {
	if _, ok := l.pending[id]; ok {
		return true
	}
	_, ok := l.claimed[id]
	return ok
}

// claim takes the verdict for an order (rule 8): still the one stored, unexpired, and the channel still open so the
// order can be reported. It then pends until Python adopts it or answers its `resolve`.
func (l *Lane) claim(v *verdict, nowMs int64, cid string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	key := slot{v.APIKey, v.Symbol, v.Side}
	if l.verdicts[key] != v || v.ExpiresMs <= nowMs || l.isClosed() {
		return false
	}
	delete(l.verdicts, key)
	delete(l.byID, v.ID)
	l.pending[v.ID] = make(chan struct{})
	if old := l.ring[l.ringNext]; old != 0 {
		delete(l.claimed, old)
	}
	l.ring[l.ringNext] = v.ID
	l.ringNext = (l.ringNext + 1) % len(l.ring)
	l.claimed[v.ID] = struct{}{}
	if cid != "" {
		l.link(v.ID, cid)
	}
	return true
}

// unpend: with l.mu held.
func (l *Lane) unpend(id int64) {
	if done, ok := l.pending[id]; ok {
		delete(l.pending, id)
		close(done)
	}
	if cid, ok := l.byVerdict[id]; ok {
		delete(l.byVerdict, id)
		if done, ok := l.inProgress[cid]; ok {
			delete(l.inProgress, cid)
			close(done)
		}
	}
}

// hold marks ids first seen in this request as in progress until released (or, for the one whose order the fast
// path sends, until that order is booked: link).
func (l *Lane) hold(fresh map[string]bool) {
	if len(fresh) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for id := range fresh {
		if _, ok := l.inProgress[id]; !ok {
			l.inProgress[id] = make(chan struct{})
		}
	}
}

// link keeps a held id in progress until the order of verdict vid is booked. With l.mu held (claim).
func (l *Lane) link(vid int64, cid string) {
	if _, ok := l.inProgress[cid]; ok {
		l.byVerdict[vid] = cid
	}
}

// release ends the hold on ids this request held, but those linked to an order still pending.
func (l *Lane) release(fresh map[string]bool) {
	if len(fresh) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	linked := map[string]bool{}
	for _, cid := range l.byVerdict {
		linked[cid] = true
	}
	for id := range fresh {
		if done, ok := l.inProgress[id]; ok && !linked[id] {
			delete(l.inProgress, id)
			close(done)
		}
	}
}

// inProgressOf lists what a request naming these ids (and not holding them) must wait for.
func (l *Lane) inProgressOf(ids []string) []chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []chan struct{}
	for _, id := range ids {
		if done, ok := l.inProgress[id]; ok {
			out = append(out, done)
		}
	}
	return out
}

// pendingNow lists what a forwarded request must wait for: the orders pending when it arrived. Orders claimed
// later cannot be ones the bot has heard of, so they do not hold it up (no starvation under a steady flow).
func (l *Lane) pendingNow() []chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pending) == 0 {
		return nil
	}
	out := make([]chan struct{}, 0, len(l.pending))
	for _, done := range l.pending {
		out = append(out, done)
	}
	return out
}

// lookup finds the verdict for a slot (rule 2's look-up; claim re-checks it under the same lock).
func (l *Lane) lookup(apiKey, symbol, side string) *verdict {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.verdicts[slot{apiKey, symbol, side}]
}

// awaitResolve registers a `resolve` before it is sent; the answer arrives on the channel.
func (l *Lane) awaitResolve(verdictID int64) (int64, chan resolvedMsg) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.nextReq++
	ch := make(chan resolvedMsg, 1)
	l.waiting[l.nextReq] = ch
	l.waitVid[l.nextReq] = verdictID
	return l.nextReq, ch
}
