package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The test's three peers of the lane: an exchange (httptest), the Python gateway (a Unix socket) and Python's end of
// the control channel (a socketpair).

const (
	exKey      = "exchange-key-1"
	exSecret   = "exchange-secret-1"
	botKey     = "bot-key-alpha"
	botSecret  = "bot-secret-alpha"
	offsetMs   = 1500
	recvWindow = 6000
)

func TestMain(m *testing.M) {
	// The lane binary itself, for the tests that run it as a process (fd 3 from ExtraFiles).
	if os.Getenv("KEYGUARD_LANE_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func socketPair(t *testing.T) (net.Conn, *os.File) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours := os.NewFile(uintptr(fds[0]), "peer")
	conn, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		t.Fatal(err)
	}
	return conn, os.NewFile(uintptr(fds[1]), "lane")
}

func fileConn(t *testing.T, f *os.File) net.Conn {
	t.Helper()
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// shortDir: Unix socket paths must stay under ~108 bytes, which t.TempDir() may not.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "lane")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

type exRequest struct {
	method, path, query, apiKey string
}

type fakeExchange struct {
	srv   *httptest.Server
	conns atomic.Int64 // connections the exchange accepted
	mu    sync.Mutex
	got   []exRequest
	mode  string // ok, reject, drop, slow, foreign (a 200 for another id)
}

func newFakeExchange(t *testing.T, useTLS bool) *fakeExchange {
	e := &fakeExchange{mode: "ok"}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.got = append(e.got, exRequest{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("X-MBX-APIKEY")})
		mode := e.mode
		e.mu.Unlock()
		cid := r.URL.Query().Get("newClientOrderId")
		w.Header().Set("X-MBX-USED-WEIGHT-1M", "7")
		w.Header().Set("X-MBX-ORDER-COUNT-10S", "1")
		w.Header().Set("Content-Type", "application/json;charset=UTF-8")
		switch mode {
		case "reject":
			w.WriteHeader(400)
			io.WriteString(w, `{"code":-2010,"msg":"Account has insufficient balance for requested action."}`)
			return
		case "drop":
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		case "slow":
			time.Sleep(time.Second)
		case "foreign":
			cid = "someone-else"
		}
		io.WriteString(w, `{"symbol":"BTCUSDT","orderId":28,"orderListId":-1,"clientOrderId":"`+cid+
			`","transactTime":1507725176595,"origQty":"0.5","status":"FILLED","fills":[]}`)
	})
	e.srv = httptest.NewUnstartedServer(handler)
	e.srv.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			e.conns.Add(1)
		}
	}
	if useTLS {
		e.srv.StartTLS()
	} else {
		e.srv.Start()
	}
	t.Cleanup(e.srv.Close)
	return e
}

func (e *fakeExchange) set(mode string) {
	e.mu.Lock()
	e.mode = mode
	e.mu.Unlock()
}

func (e *fakeExchange) requests() []exRequest {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]exRequest(nil), e.got...)
}

type pyRequest struct {
	method, uri, host, body string
	header                  http.Header
}

type fakePython struct {
	path string
	mu   sync.Mutex
	got  []pyRequest
}

func newFakePython(t *testing.T, dir string) *fakePython {
	p := &fakePython{path: filepath.Join(dir, "gw.sock")}
	listener, err := net.Listen("unix", p.path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: listener, Config: &http.Server{Handler: http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			p.mu.Lock()
			p.got = append(p.got, pyRequest{r.Method, r.RequestURI, r.Host, string(body), r.Header.Clone()})
			p.mu.Unlock()
			w.Header().Set("X-From", "python")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(202)
			io.WriteString(w, `{"from":"python"}`)
		})}}
	srv.Start()
	t.Cleanup(srv.Close)
	return p
}

func (p *fakePython) requests() []pyRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]pyRequest(nil), p.got...)
}

type options struct {
	maxConnections int
	timeoutMs      int
	tls            bool
	prefix         string
	unix           bool
	noPython       bool
}

type harness struct {
	t       *testing.T
	lane    *Lane
	peer    net.Conn
	msgs    chan map[string]any
	url     string
	client  *http.Client
	ex      *fakeExchange
	py      *fakePython
	dir     string
	intents string
	done    chan error
	key     [2]string // the exchange key last sent, for sync
}

func start(t *testing.T, opt options) *harness {
	t.Helper()
	if opt.maxConnections == 0 {
		opt.maxConnections = 64
	}
	if opt.timeoutMs == 0 {
		opt.timeoutMs = 3000
	}
	h := &harness{t: t, dir: shortDir(t), msgs: make(chan map[string]any, 100), done: make(chan error, 1),
		key: [2]string{exKey, exSecret}}
	h.ex = newFakeExchange(t, opt.tls)
	upstream := filepath.Join(h.dir, "absent.sock")
	if !opt.noPython {
		h.py = newFakePython(t, h.dir)
		upstream = h.py.path
	}
	h.intents = filepath.Join(h.dir, "lane.intents")
	peer, laneEnd := socketPair(t)
	h.peer = peer
	h.lane = newLane(log.New(io.Discard, "", 0))
	if opt.tls {
		pool := x509.NewCertPool()
		pool.AddCert(h.ex.srv.Certificate())
		h.lane.rootCAs = pool
	}
	go func() { h.done <- h.lane.run(fileConn(t, laneEnd)) }()
	listen := map[string]any{"host": "127.0.0.1", "port": 0}
	if opt.unix {
		listen = map[string]any{"unix": filepath.Join(h.dir, "bots.sock")}
	}
	h.sendMsg(map[string]any{"t": "hello", "listen": listen, "upstream": upstream,
		"exchange": map[string]any{"base_url": h.ex.srv.URL + opt.prefix, "api_key": exKey, "secret": exSecret,
			"timeout_ms": opt.timeoutMs, "recv_window_ms": recvWindow, "source_address": "127.0.0.1"},
		"intent_log": h.intents,
		"server": map[string]any{"max_connections": opt.maxConnections, "idle_timeout_s": 30.0,
			"request_timeout_s": 5.0, "max_head_bytes": 16384, "max_body_bytes": 4096}})
	reader := bufio.NewReader(peer)
	go func() {
		for {
			line, err := reader.ReadBytes('\n')
			if err != nil {
				close(h.msgs)
				return
			}
			var m map[string]any
			if err := json.Unmarshal(line, &m); err != nil {
				panic(fmt.Sprintf("lane wrote %q: %v", line, err))
			}
			h.msgs <- m
		}
	}()
	ready := h.expect("ready")
	h.url = ready["url"].(string)
	transport := &http.Transport{}
	if strings.HasPrefix(h.url, "unix:") {
		path := strings.TrimPrefix(h.url, "unix:")
		transport.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
		h.url = "http://lane"
	}
	h.client = &http.Client{Transport: transport, Timeout: 20 * time.Second}
	t.Cleanup(func() {
		transport.CloseIdleConnections()
		h.stop()
	})
	return h
}

// stop closes Python's end and waits for the lane to return.
func (h *harness) stop() {
	h.peer.Close()
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("lane returned %v", err)
		}
		h.done <- nil // for a second stop
	case <-time.After(10 * time.Second):
		h.t.Errorf("lane did not stop")
	}
}

func (h *harness) sendMsg(m map[string]any) {
	h.t.Helper()
	data, _ := json.Marshal(m)
	if _, err := h.peer.Write(append(data, '\n')); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) expect(kind string) map[string]any {
	h.t.Helper()
	select {
	case m, ok := <-h.msgs:
		if !ok {
			h.t.Fatalf("control channel closed, waiting for %s", kind)
		}
		if m["t"] != kind {
			h.t.Fatalf("expected %s, got %v", kind, m)
		}
		return m
	case <-time.After(10 * time.Second):
		h.t.Fatalf("no %s", kind)
	}
	return nil
}

func (h *harness) quiet(d time.Duration) {
	h.t.Helper()
	select {
	case m := <-h.msgs:
		h.t.Fatalf("unexpected message %v", m)
	case <-time.After(d):
	}
}

// sync waits until the lane has handled everything sent before it (a `key` with the current key, answered in order).
func (h *harness) sync() {
	h.t.Helper()
	h.sendMsg(map[string]any{"t": "key", "req": 999, "api_key": h.key[0], "secret": h.key[1]})
	if m := h.expect("ack"); m["req"].(float64) != 999 {
		h.t.Fatalf("ack %v", m)
	}
}

var nextVerdict = 100

type verdictOpt func(map[string]any)

func (h *harness) verdict(opts ...verdictOpt) int {
	h.t.Helper()
	nextVerdict++
	id := nextVerdict
	stampFile := filepath.Join(h.dir, "trading.json")
	if _, err := os.Stat(stampFile); err != nil {
		os.WriteFile(stampFile, []byte(`{"state":"on"}`), 0o600)
	}
	m := map[string]any{"t": "verdict", "id": id, "bot": "alpha", "api_key": botKey, "secret": botSecret,
		"symbol": "BTCUSDT", "side": "BUY", "max_qty": 1.0, "max_price": 101.0,
		"expires_ms": time.Now().UnixMilli() + 60000, "time_offset_ms": offsetMs,
		"stamps": []any{stampOf(h.t, stampFile), stampOf(h.t, filepath.Join(h.dir, "kill"))},
		"intent": fmt.Sprintf("%032x", id), "cid": fmt.Sprintf("kg-%024x-1", id)}
	for _, o := range opts {
		o(m)
	}
	h.sendMsg(m)
	h.sync()
	return id
}

func with(name string, value any) verdictOpt { return func(m map[string]any) { m[name] = value } }

func stampOf(t *testing.T, path string) []any {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return []any{path, 0, 0, 0}
	}
	return []any{path, st.Mtim.Nano(), st.Ino, st.Size}
}

func serverNow() int64 { return time.Now().UnixMilli() + offsetMs }

// signed appends the bot's signature to params.
func signed(params, secret string) string {
	return params + "&signature=" + sign([]byte(secret), params)
}

func limitOrder(cid string) string { return limitOrderAt(cid, serverNow()) }

func limitOrderAt(cid string, timestamp int64) string {
	return "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.5&price=100.5&newClientOrderId=" + cid +
		"&recvWindow=5000&timestamp=" + strconv.FormatInt(timestamp, 10)
}

// do sends a request with the parameters in the query and/or a form body; apiKey "" sends no key header.
func (h *harness) do(method, path, query, body, apiKey string) (*http.Response, string) {
	h.t.Helper()
	target := h.url + path
	if query != "" {
		target += "?" + query
	}
	var reader io.Reader
	if body != "" {
		reader = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, target, reader)
	if err != nil {
		h.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if apiKey != "" {
		req.Header.Set("X-MBX-APIKEY", apiKey)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(data)
}

func (h *harness) order(query string) (*http.Response, string) {
	h.t.Helper()
	return h.do("POST", "/api/v3/order", query, "", botKey)
}

// checkExchangeOrder checks one order the exchange got: signed with the exchange secret, the verdict's cid, a
// timestamp near now plus the offset, the configured recvWindow; it returns the parameters.
func checkExchangeOrder(t *testing.T, got exRequest, apiKey, secret, cid string) url.Values {
	t.Helper()
	if got.method != "POST" || got.apiKey != apiKey {
		t.Fatalf("exchange got %+v", got)
	}
	cut := strings.LastIndex(got.query, "&signature=")
	if cut < 0 || sign([]byte(secret), got.query[:cut]) != got.query[cut+len("&signature="):] {
		t.Fatalf("exchange signature wrong in %q", got.query)
	}
	values, _ := url.ParseQuery(got.query)
	if values.Get("newClientOrderId") != cid {
		t.Fatalf("exchange cid %q, want %q", values.Get("newClientOrderId"), cid)
	}
	ts, _ := strconv.ParseInt(values.Get("timestamp"), 10, 64)
	if d := serverNow() - ts; d < 0 || d > 2000 {
		t.Fatalf("exchange timestamp %d is %d ms from now+offset", ts, d)
	}
	if values.Get("recvWindow") != strconv.Itoa(recvWindow) {
		t.Fatalf("recvWindow %q", values.Get("recvWindow"))
	}
	return values
}

// placeFast makes a verdict, sends a fitting order with this bot id, checks the lane sent it and reported it
// `placed`; the verdict's id.
func (h *harness) placeFast(botCID string) int {
	h.t.Helper()
	id := h.verdict()
	if resp, body := h.order(signed(limitOrder(botCID), botSecret)); resp.StatusCode != 200 {
		h.t.Fatalf("%s was not sent fast: %d %s", botCID, resp.StatusCode, body)
	}
	h.expect("placed")
	return id
}
