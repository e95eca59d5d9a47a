package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func exchangeBody(cid string) string {
	return `{"symbol":"BTCUSDT","orderId":28,"orderListId":-1,"clientOrderId":"` + cid +
		`","transactTime":1507725176595,"origQty":"0.5","status":"FILLED","fills":[]}`
}

func num(m map[string]any, name string) int64 {
	f, _ := m[name].(float64)
	return int64(f)
}

func TestFastOrder(t *testing.T) {
	h := start(t, options{prefix: "/base/"})
	id := h.verdict()
	cid := fmt.Sprintf("kg-%024x-1", id)
	resp, body := h.order(signed(limitOrder("bot-order-1"), botSecret))
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("bot got %d %v %s", resp.StatusCode, resp.Header, body)
	}
	if body != exchangeBody("bot-order-1") {
		t.Fatalf("bot got %s", body)
	}
	got := h.ex.requests()
	if len(got) != 1 || got[0].path != "/base/api/v3/order" {
		t.Fatalf("exchange got %+v", got)
	}
	checkExchangeOrder(t, got[0], exKey, exSecret, cid)
	wantStart := "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.5&price=100.5&newClientOrderId=" +
		cid + "&timestamp="
	if !strings.HasPrefix(got[0].query, wantStart) {
		t.Fatalf("exchange query %q", got[0].query)
	}

	placed := h.expect("placed")
	wire := []any{[]any{"symbol", "BTCUSDT"}, []any{"side", "BUY"}, []any{"type", "LIMIT"},
		[]any{"timeInForce", "GTC"}, []any{"quantity", "0.5"}, []any{"price", "100.5"}}
	want := map[string]any{"t": "placed", "id": float64(id), "bot_cid": "bot-order-1", "type": "LIMIT", "qty": "0.5",
		"price": "100.5", "wire": wire, "status": float64(200), "body": exchangeBody(cid),
		"headers": map[string]any{"x-mbx-used-weight-1m": "7", "x-mbx-order-count-10s": "1"}}
	sent := num(placed, "sent_ms")
	if d := time.Now().UnixMilli() - sent; d < 0 || d > 2000 {
		t.Fatalf("sent_ms %d", sent)
	}
	delete(placed, "sent_ms")
	if !reflect.DeepEqual(placed, want) {
		t.Fatalf("placed %v\nwant %v", placed, want)
	}

	data, err := os.ReadFile(h.intents)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 1 {
		t.Fatalf("intent log %q", data)
	}
	var record map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &record); err != nil {
		t.Fatal(err)
	}
	wantRecord := map[string]any{"id": float64(id), "intent": fmt.Sprintf("%032x", id), "cid": cid, "bot": "alpha",
		"bot_cid": "bot-order-1", "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "qty": "0.5",
		"price": "100.5", "wire": wire, "sent_ms": float64(sent)}
	if !reflect.DeepEqual(record, wantRecord) {
		t.Fatalf("intent record %v\nwant %v", record, wantRecord)
	}
	if n := len(h.py.requests()); n != 0 {
		t.Fatalf("python got %d requests", n)
	}

	// Single use: the same verdict cannot carry a second order (after adoption, so the barrier lets it pass).
	h.sendMsg(map[string]any{"t": "adopted", "id": id})
	query := signed(limitOrder("bot-order-2"), botSecret)
	resp, body = h.order(query)
	if resp.StatusCode != 202 || body != `{"from":"python"}` {
		t.Fatalf("second use: %d %s", resp.StatusCode, body)
	}
	if py := h.py.requests(); len(py) != 1 || py[0].uri != "/api/v3/order?"+query {
		t.Fatalf("python got %+v", py)
	}
	if n := len(h.ex.requests()); n != 1 {
		t.Fatalf("exchange got %d orders", n)
	}
	h.quiet(100 * time.Millisecond)
}

// A MARKET order in a form body, without a client id, to an https exchange.
func TestFastOrderFormBodyTLS(t *testing.T) {
	h := start(t, options{tls: true})
	id := h.verdict(with("max_price", nil))
	cid := fmt.Sprintf("kg-%024x-1", id)
	params := "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=1&newOrderRespType=FULL&timestamp=" +
		strconv.FormatInt(serverNow(), 10)
	resp, body := h.do("POST", "/api/v3/order", "", signed(params, botSecret), botKey)
	if resp.StatusCode != 200 {
		t.Fatalf("bot got %d %s", resp.StatusCode, body)
	}
	placed := h.expect("placed")
	botCID := placed["bot_cid"].(string)
	if len(botCID) != 32 || !strings.HasPrefix(botCID, "gw") || body != exchangeBody(botCID) {
		t.Fatalf("bot id %q, body %s", botCID, body)
	}
	if placed["price"] != nil || placed["type"] != "MARKET" || placed["qty"] != "1" {
		t.Fatalf("placed %v", placed)
	}
	got := h.ex.requests()
	if len(got) != 1 {
		t.Fatalf("exchange got %+v", got)
	}
	checkExchangeOrder(t, got[0], exKey, exSecret, cid)
	if !strings.HasPrefix(got[0].query, "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=1&newOrderRespType=FULL&"+
		"newClientOrderId=") {
		t.Fatalf("exchange query %q", got[0].query)
	}

	// Later orders reuse the kept-alive TLS connection (checked alive before use).
	conns := h.ex.conns.Load()
	for i := 0; i < 2; i++ {
		h.sendMsg(map[string]any{"t": "adopted", "id": id})
		id = h.verdict()
		if resp, _ := h.order(signed(limitOrder(fmt.Sprintf("tls-%d", i)), botSecret)); resp.StatusCode != 200 {
			t.Fatal("not fast")
		}
		h.expect("placed")
	}
	if n := h.ex.conns.Load(); n != conns {
		t.Fatalf("%d new exchange connections for later orders", n-conns)
	}
}

func TestForwardedUnchanged(t *testing.T) {
	h := start(t, options{})
	h.verdict()
	h.verdict(with("side", "SELL"), with("expires_ms", time.Now().UnixMilli()-1))
	killFile := filepath.Join(h.dir, "eth.kill")
	h.verdict(with("symbol", "ETHUSDT"), with("stamps", []any{stampOf(t, killFile)}))
	h.sendMsg(map[string]any{"t": "ids", "ids": []string{"known-to-python"}})
	h.sync()
	// An order the lane forwarded for another reason has its id recorded as well.
	if resp, _ := h.order(signed(strings.Replace(limitOrder("forwarded-first"), "BTCUSDT", "XRPUSDT", 1),
		botSecret)); resp.StatusCode != 202 {
		t.Fatal("not forwarded")
	}

	now := func() string { return strconv.FormatInt(serverNow(), 10) }
	base := func(cid string) string { return limitOrder(cid) }
	type request struct{ method, path, query, body, key string }
	order := func(query string) request { return request{"POST", "/api/v3/order", query, "", botKey} }
	cases := map[string]request{
		"no verdict for the symbol": order(signed(strings.Replace(base("c1"), "BTCUSDT", "BNBUSDT", 1),
			botSecret)),
		"unknown api key":   {"POST", "/api/v3/order", signed(base("c2"), botSecret), "", "other-key"},
		"no api key":        {"POST", "/api/v3/order", signed(base("c2b"), botSecret), "", ""},
		"wrong signature":   order(signed(base("c3"), "not-the-secret")),
		"garbage signature": order(base("c4") + "&signature=" + strings.Repeat("A", 64)),
		"expired verdict": order(signed("symbol=BTCUSDT&side=SELL&type=MARKET&quantity=0.5&newClientOrderId=c5"+
			"&timestamp="+now(), botSecret)),
		"quantity over max":                order(signed(strings.Replace(base("c6"), "quantity=0.5", "quantity=1.5", 1), botSecret)),
		"quantity zero":                    order(signed(strings.Replace(base("c6b"), "quantity=0.5", "quantity=0.0", 1), botSecret)),
		"quantity exponent":                order(signed(strings.Replace(base("c6c"), "quantity=0.5", "quantity=5e-1", 1), botSecret)),
		"price over max":                   order(signed(strings.Replace(base("c7"), "price=100.5", "price=101.5", 1), botSecret)),
		"unknown parameter":                order(signed(base("c8")+"&icebergQty=0.1", botSecret)),
		"duplicate parameter":              order(signed(base("c9")+"&quantity=0.5", botSecret)),
		"percent in a value":               order(signed(base("c10%2D1"), botSecret)),
		"plus in a value":                  order(signed(base("c11+1"), botSecret)),
		"empty value":                      order(signed(base("c12")+"&newOrderRespType=", botSecret)),
		"bad response type":                order(signed(base("c13")+"&newOrderRespType=MINI", botSecret)),
		"lower-case side":                  order(signed(strings.Replace(base("c14"), "side=BUY", "side=buy", 1), botSecret)),
		"market with a price":              order(signed(strings.Replace(base("c15"), "type=LIMIT&timeInForce=GTC", "type=MARKET", 1), botSecret)),
		"limit without tif":                order(signed(strings.Replace(base("c16"), "timeInForce=GTC&", "", 1), botSecret)),
		"limit with GTX":                   order(signed(strings.Replace(base("c17"), "GTC", "GTX", 1), botSecret)),
		"stop type":                        order(signed(strings.Replace(base("c18"), "type=LIMIT", "type=STOP_LOSS_LIMIT", 1), botSecret)),
		"client id too long":               order(signed(base(strings.Repeat("x", 37)), botSecret)),
		"client id seen (ids)":             order(signed(base("known-to-python"), botSecret)),
		"client id seen (forwarded order)": order(signed(base("forwarded-first"), botSecret)),
		"recvWindow over 60000": order(signed(strings.Replace(base("c20"), "recvWindow=5000", "recvWindow=60001", 1),
			botSecret)),
		"signature not last": order(strings.Replace(signed(base("c21"), botSecret), "&recvWindow=5000", "", 1) +
			"&recvWindow=5000"),
		"query and body": {"POST", "/api/v3/order", "newOrderRespType=ACK", signed(base("c22"), botSecret), botKey},
		"changed stamp":  order(signed(strings.Replace(base("c23"), "BTCUSDT", "ETHUSDT", 1), botSecret)),
		"trailing slash": {"POST", "/api/v3/order/", signed(base("c24"), botSecret), "", botKey},
		"GET of an order": {"GET", "/api/v3/order", "symbol=BTCUSDT&origClientOrderId=c1&timestamp=" + now() +
			"&signature=ab", "", botKey},
		"market data": {"GET", "/api/v3/depth", "symbol=BTCUSDT&limit=5", "", ""},
	}
	cases["timestamp too old"] = order(signed(limitOrderAt("c19", serverNow()-5100), botSecret))
	cases["timestamp in the future"] = order(signed(limitOrderAt("c19b", serverNow()+1500), botSecret))
	os.WriteFile(killFile, []byte("engaged"), 0o600)

	for name, c := range cases {
		before := len(h.py.requests())
		resp, body := h.do(c.method, c.path, c.query, c.body, c.key)
		if resp.StatusCode != 202 || body != `{"from":"python"}` || resp.Header.Get("X-From") != "python" {
			t.Errorf("%s: bot got %d %s", name, resp.StatusCode, body)
			continue
		}
		py := h.py.requests()
		if len(py) != before+1 {
			t.Errorf("%s: python got %d requests", name, len(py)-before)
			continue
		}
		got := py[len(py)-1]
		uri := c.path
		if c.query != "" {
			uri += "?" + c.query
		}
		if got.method != c.method || got.uri != uri || got.body != c.body ||
			got.header.Get("X-MBX-APIKEY") != c.key || got.host != strings.TrimPrefix(h.url, "http://") ||
			got.header.Get("X-Forwarded-For") != "" {
			t.Errorf("%s: python got %+v", name, got)
		}
	}
	if n := len(h.ex.requests()); n != 0 {
		t.Fatalf("exchange got %d orders", n)
	}
	h.quiet(50 * time.Millisecond)
	// Nothing was consumed: a fitting order still takes the fast path.
	if resp, body := h.order(signed(limitOrder("c-final"), botSecret)); resp.StatusCode != 200 ||
		body != exchangeBody("c-final") {
		t.Fatalf("final order: %d %s", resp.StatusCode, body)
	}
	h.expect("placed")
}

func TestBarrier(t *testing.T) {
	h := start(t, options{})
	id := h.placeFast("b1")
	status := make(chan int, 1)
	go func() {
		resp, _ := h.do("GET", "/api/v3/openOrders", signed("timestamp="+strconv.FormatInt(serverNow(), 10),
			botSecret), "", "any-key-at-all")
		status <- resp.StatusCode
	}()
	// Unsigned requests never wait.
	if resp, _ := h.do("GET", "/api/v3/time", "", "", ""); resp.StatusCode != 202 {
		t.Fatal("unsigned request held")
	}
	select {
	case s := <-status:
		t.Fatalf("signed request answered (%d) while an order is pending", s)
	case <-time.After(300 * time.Millisecond):
	}
	for _, r := range h.py.requests() {
		if strings.HasPrefix(r.uri, "/api/v3/openOrders") {
			t.Fatal("python got the signed request before adoption")
		}
	}
	h.sendMsg(map[string]any{"t": "adopted", "id": id})
	select {
	case s := <-status:
		if s != 202 {
			t.Fatalf("signed request: %d", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("signed request still held after adoption")
	}
}

func TestBarrierReleasedWhenControlCloses(t *testing.T) {
	h := start(t, options{})
	h.placeFast("b2")
	done := make(chan string, 1)
	go func() {
		resp, body := h.do("GET", "/api/v3/openOrders", "timestamp=1&signature=ab", "", botKey)
		done <- strconv.Itoa(resp.StatusCode) + " " + body
	}()
	time.Sleep(200 * time.Millisecond)
	h.peer.Close()
	select {
	case got := <-done:
		if !strings.HasPrefix(got, `503 {"code":-1007,"msg":"KEYGUARD_LANE_PENDING: `) {
			t.Fatalf("got %s", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("still held")
	}
}

func (h *harness) orderAsync(query string) chan [2]string {
	out := make(chan [2]string, 1)
	go func() {
		resp, body := h.order(query)
		out <- [2]string{strconv.Itoa(resp.StatusCode) + " " + resp.Header.Get("X-Relayed"), body}
	}()
	return out
}

func (h *harness) answer(result chan [2]string) [2]string {
	h.t.Helper()
	select {
	case r := <-result:
		return r
	case <-time.After(10 * time.Second):
		h.t.Fatal("the bot got no answer")
	}
	return [2]string{}
}

func TestResolveOnRejection(t *testing.T) {
	h := start(t, options{})
	id := h.verdict()
	h.ex.set("reject")
	result := h.orderAsync(signed(limitOrder("r1"), botSecret))
	m := h.expect("resolve")
	rejection := `{"code":-2010,"msg":"Account has insufficient balance for requested action."}`
	if num(m, "id") != int64(id) || m["bot_cid"] != "r1" || num(m, "status") != 400 || m["body"] != rejection ||
		m["error"] != nil || m["qty"] != "0.5" || m["price"] != "100.5" {
		t.Fatalf("resolve %v", m)
	}
	if _, ok := m["error"]; !ok {
		t.Fatal("resolve without an error field")
	}
	if hd := m["headers"].(map[string]any); hd["x-mbx-used-weight-1m"] != "7" {
		t.Fatalf("headers %v", hd)
	}
	answer := `{"code":-2010,"msg":"Account has insufficient balance for requested action."}`
	h.sendMsg(map[string]any{"t": "resolved", "req": m["req"], "status": 400, "body": answer,
		"headers": map[string]any{"X-Relayed": "yes", "Content-Type": "application/json"}})
	if got := h.answer(result); got[0] != "400 yes" || got[1] != answer {
		t.Fatalf("bot got %v", got)
	}
	// Resolved: no longer pending, so a signed request goes straight through.
	if resp, _ := h.do("GET", "/api/v3/openOrders", "timestamp=1&signature=ab", "", botKey); resp.StatusCode != 202 {
		t.Fatal("signed request after resolve")
	}

	// A 200 that is not the order's own report is Python's to judge too.
	h.verdict()
	h.ex.set("foreign")
	result = h.orderAsync(signed(limitOrder("r2"), botSecret))
	m = h.expect("resolve")
	if num(m, "status") != 200 || !strings.Contains(m["body"].(string), "someone-else") || m["error"] != nil {
		t.Fatalf("resolve %v", m)
	}
	h.sendMsg(map[string]any{"t": "resolved", "req": m["req"], "status": 200, "body": "{}", "headers": map[string]any{}})
	if got := h.answer(result); got[0] != "200 " || got[1] != "{}" {
		t.Fatalf("bot got %v", got)
	}
}

func TestResolveOnDroppedConnection(t *testing.T) {
	h := start(t, options{})
	h.verdict()
	h.ex.set("drop")
	result := h.orderAsync(signed(limitOrder("d1"), botSecret))
	m := h.expect("resolve")
	errText, _ := m["error"].(string)
	if !strings.HasPrefix(errText, "failed: ") || m["status"] != nil || m["body"] != nil {
		t.Fatalf("resolve %v", m)
	}
	unknown := `{"code":-1007,"msg":"Timeout waiting for response from backend server. Send status unknown; ` +
		`execution status unknown."}`
	h.sendMsg(map[string]any{"t": "resolved", "req": m["req"], "status": 503, "body": unknown,
		"headers": map[string]any{"Content-Type": "application/json"}})
	if got := h.answer(result); got[0] != "503 " || got[1] != unknown {
		t.Fatalf("bot got %v", got)
	}
	if n := len(h.ex.requests()); n != 1 {
		t.Fatalf("exchange got %d orders: the lane must never resend", n)
	}
}

func TestResolveOnTimeout(t *testing.T) {
	h := start(t, options{timeoutMs: 300})
	h.verdict()
	h.ex.set("slow")
	result := h.orderAsync(signed(limitOrder("s1"), botSecret))
	m := h.expect("resolve")
	if m["error"] != "timeout" || m["status"] != nil {
		t.Fatalf("resolve %v", m)
	}
	h.sendMsg(map[string]any{"t": "resolved", "req": m["req"], "status": 503, "body": "x", "headers": map[string]any{}})
	if got := h.answer(result); got[0] != "503 " {
		t.Fatalf("bot got %v", got)
	}
}

func TestResolveWhenControlCloses(t *testing.T) {
	h := start(t, options{})
	h.verdict()
	h.ex.set("reject")
	result := h.orderAsync(signed(limitOrder("x1"), botSecret))
	h.expect("resolve")
	h.peer.Close()
	want := `{"code":-1007,"msg":"Timeout waiting for response from backend server. Send status unknown; ` +
		`execution status unknown."}`
	if got := h.answer(result); got[0] != "503 " || got[1] != want {
		t.Fatalf("bot got %v", got)
	}
}

func TestIntentLogFailure(t *testing.T) {
	h := start(t, options{})
	h.verdict()
	h.lane.intents.Close()
	result := h.orderAsync(signed(limitOrder("u1"), botSecret))
	m := h.expect("resolve")
	if m["error"] != "unsent" || m["status"] != nil {
		t.Fatalf("resolve %v", m)
	}
	h.sendMsg(map[string]any{"t": "resolved", "req": m["req"], "status": 500, "body": "{}", "headers": map[string]any{}})
	h.answer(result)
	if n := len(h.ex.requests()); n != 0 {
		t.Fatalf("exchange got %d orders", n)
	}
}

func TestRevoke(t *testing.T) {
	h := start(t, options{})
	claimed := h.verdict()
	replaced := h.verdict(with("side", "SELL"))
	expired := h.verdict(with("symbol", "ETHUSDT"), with("expires_ms", time.Now().UnixMilli()-1))
	if resp, _ := h.order(signed(limitOrder("v1"), botSecret)); resp.StatusCode != 200 {
		t.Fatal("not fast")
	}
	h.expect("placed")
	replacement := h.verdict(with("side", "SELL"))

	h.sendMsg(map[string]any{"t": "revoke", "req": 5, "ids": []int{claimed, expired, 99999}})
	m := h.expect("revoked")
	gone := map[float64]bool{}
	for _, id := range m["gone"].([]any) {
		gone[id.(float64)] = true
	}
	want := map[float64]bool{float64(expired): true, 99999: true, float64(replaced): true}
	if num(m, "req") != 5 || !reflect.DeepEqual(gone, want) ||
		!reflect.DeepEqual(m["claimed"], []any{float64(claimed)}) {
		t.Fatalf("revoked %v", m)
	}
	// Still claimed after adoption (remembered); the replaced one is reported once.
	h.sendMsg(map[string]any{"t": "adopted", "id": claimed})
	h.sendMsg(map[string]any{"t": "revoke", "req": 6, "ids": []int{replacement, claimed}})
	m = h.expect("revoked")
	if !reflect.DeepEqual(m["gone"], []any{float64(replacement)}) ||
		!reflect.DeepEqual(m["claimed"], []any{float64(claimed)}) {
		t.Fatalf("revoked %v", m)
	}
	// Revoked: a fitting order goes to Python.
	query := signed(strings.Replace(limitOrder("v2"), "side=BUY", "side=SELL", 1), botSecret)
	if resp, _ := h.order(query); resp.StatusCode != 202 {
		t.Fatal("order on a revoked verdict was not forwarded")
	}
	h.sendMsg(map[string]any{"t": "revoke", "req": 7, "ids": []int{}})
	if m = h.expect("revoked"); len(m["gone"].([]any)) != 0 || len(m["claimed"].([]any)) != 0 {
		t.Fatalf("revoked %v", m)
	}
}

func TestKeySwap(t *testing.T) {
	h := start(t, options{})
	h.sendMsg(map[string]any{"t": "key", "req": 7, "api_key": "exchange-key-2", "secret": "exchange-secret-2"})
	if m := h.expect("ack"); num(m, "req") != 7 {
		t.Fatalf("ack %v", m)
	}
	h.key = [2]string{"exchange-key-2", "exchange-secret-2"}
	id := h.verdict()
	if resp, _ := h.order(signed(limitOrder("k1"), botSecret)); resp.StatusCode != 200 {
		t.Fatal("not fast")
	}
	got := h.ex.requests()
	checkExchangeOrder(t, got[len(got)-1], "exchange-key-2", "exchange-secret-2", fmt.Sprintf("kg-%024x-1", id))
}

func TestMaxConnections(t *testing.T) {
	h := start(t, options{maxConnections: 1})
	if resp, _ := h.do("GET", "/api/v3/time", "", "", ""); resp.StatusCode != 202 {
		t.Fatal("first connection refused")
	}
	addr := strings.TrimPrefix(h.url, "http://")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	conn.Write([]byte("GET /api/v3/ping HTTP/1.1\r\nHost: lane\r\n\r\n"))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 200)
	n, _ := resp.Body.Read(body)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || string(body[:n]) != busyBody {
		t.Fatalf("got %d %v %s", resp.StatusCode, resp.Header, body[:n])
	}
	// The kept-alive connection still serves, and once it closes there is room again.
	if resp, _ := h.do("GET", "/api/v3/time", "", "", ""); resp.StatusCode != 202 {
		t.Fatal("kept-alive connection refused")
	}
	h.client.Transport.(*http.Transport).CloseIdleConnections()
	time.Sleep(100 * time.Millisecond)
	if resp, _ := h.do("GET", "/api/v3/time", "", "", ""); resp.StatusCode != 202 {
		t.Fatal("no room after the first connection closed")
	}
}

func TestBodyTooLarge(t *testing.T) {
	h := start(t, options{})
	resp, body := h.do("POST", "/api/v3/order", "", strings.Repeat("a", 5000), botKey)
	if resp.StatusCode != 413 || body != `{"code":-1000,"msg":"Request body too large."}` {
		t.Fatalf("got %d %s", resp.StatusCode, body)
	}
}

func TestPythonNotAnswering(t *testing.T) {
	h := start(t, options{noPython: true})
	resp, body := h.do("GET", "/api/v3/time", "", "", "")
	if resp.StatusCode != 503 || body != `{"code":-1000,"msg":"KEYGUARD_INTERNAL: the gateway is not answering"}` {
		t.Fatalf("got %d %s", resp.StatusCode, body)
	}
}

func TestUnixListen(t *testing.T) {
	h := start(t, options{unix: true})
	info, err := os.Stat(filepath.Join(h.dir, "bots.sock"))
	if err != nil || info.Mode().Perm() != 0o660 {
		t.Fatalf("socket %v %v", info, err)
	}
	if resp, _ := h.do("GET", "/api/v3/time", "", "", ""); resp.StatusCode != 202 {
		t.Fatal("not served on the Unix socket")
	}

	dir := shortDir(t)
	stale := filepath.Join(dir, "stale.sock")
	old, _ := net.Listen("unix", stale)
	old.(*net.UnixListener).SetUnlinkOnClose(false)
	old.Close()
	listener, url, err := listen(listenConfig{Unix: stale})
	if err != nil || url != "unix:"+stale {
		t.Fatalf("stale socket: %v %s", err, url)
	}
	listener.Close()
	regular := filepath.Join(dir, "file")
	os.WriteFile(regular, nil, 0o600)
	if _, _, err := listen(listenConfig{Unix: regular}); err == nil {
		t.Fatal("a regular file was replaced")
	}
}

// The real process: hello on fd 3, ready, serving, and exit 0 when the control channel ends.
func TestProcessExitsOnControlEOF(t *testing.T) {
	dir := shortDir(t)
	py := newFakePython(t, dir)
	peer, laneEnd := socketPair(t)
	defer peer.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "KEYGUARD_LANE_TEST_MAIN=1")
	cmd.ExtraFiles = []*os.File{laneEnd}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	laneEnd.Close()
	hello, _ := json.Marshal(map[string]any{"t": "hello", "listen": map[string]any{"host": "127.0.0.1", "port": 0},
		"upstream": py.path, "exchange": map[string]any{"base_url": "http://127.0.0.1:9", "api_key": "k",
			"secret": "s", "timeout_ms": 1000, "recv_window_ms": 5000, "source_address": nil},
		"intent_log": filepath.Join(dir, "lane.intents"),
		"server": map[string]any{"max_connections": 8, "idle_timeout_s": 5, "request_timeout_s": 5,
			"max_head_bytes": 8192, "max_body_bytes": 4096}})
	peer.Write(append(hello, '\n'))
	peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(peer).ReadBytes('\n')
	if err != nil {
		cmd.Process.Kill()
		t.Fatalf("no ready: %v", err)
	}
	var ready readyMsg
	json.Unmarshal(line, &ready)
	resp, err := http.Get(ready.URL + "/api/v3/ping")
	if err != nil || resp.StatusCode != 202 {
		cmd.Process.Kill()
		t.Fatalf("ping through the process: %v %v", resp, err)
	}
	resp.Body.Close()
	peer.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the process did not exit")
	}
}

func TestSeenFilter(t *testing.T) {
	s := newSeenFilter()
	s.filters = []*bloom{newBloom(1 << 12)} // small, to see it grow
	for i := 0; i < 5000; i++ {
		if s.testAndAdd(fmt.Sprintf("id-%d", i)) {
			// A false positive is allowed but must be rare.
			t.Logf("false positive at %d", i)
		}
	}
	if len(s.filters) < 2 {
		t.Fatalf("%d filters after 5000 ids", len(s.filters))
	}
	for i := 0; i < 5000; i++ {
		if !s.testAndAdd(fmt.Sprintf("id-%d", i)) {
			t.Fatalf("id-%d forgotten", i)
		}
	}
	fresh := 0
	for i := 0; i < 1000; i++ {
		if !s.testAndAdd(fmt.Sprintf("other-%d", i)) {
			fresh++
		}
	}
	if fresh < 950 {
		t.Fatalf("only %d of 1000 new ids seen as new", fresh)
	}
}

// A kept-alive connection the exchange closed while idle is noticed before the order is written, and a new one dialed.
func TestStaleConnectionRedialed(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		h := start(t, options{tls: useTLS})
		id := h.verdict()
		if resp, _ := h.order(signed(limitOrder(fmt.Sprintf("stale-%v-1", useTLS)), botSecret)); resp.StatusCode != 200 {
			t.Fatal("not fast")
		}
		h.expect("placed")
		h.sendMsg(map[string]any{"t": "adopted", "id": id})
		h.ex.srv.CloseClientConnections()
		time.Sleep(50 * time.Millisecond)
		h.verdict()
		resp, body := h.order(signed(limitOrder(fmt.Sprintf("stale-%v-2", useTLS)), botSecret))
		if resp.StatusCode != 200 {
			t.Fatalf("tls=%v: after the exchange closed the connection: %d %s", useTLS, resp.StatusCode, body)
		}
		h.expect("placed")
	}
}

func TestListenURL(t *testing.T) {
	for host, want := range map[string]string{"127.0.0.1": "http://127.0.0.1:", "0.0.0.0": "http://127.0.0.1:",
		"": "http://127.0.0.1:", "::1": "http://[::1]:", "::": "http://[::1]:"} {
		listener, url, err := listen(listenConfig{Host: host})
		if err != nil {
			if strings.Contains(host, ":") {
				continue // no IPv6 here
			}
			t.Fatal(err)
		}
		listener.Close()
		if !strings.HasPrefix(url, want) {
			t.Errorf("%q: %s", host, url)
		}
	}
}

// The same id sent again on another connection while the lane's order with it is out: the second request reaches
// Python only once that order is booked, so Python answers it with that order and never makes a second one. (Here
// the barrier alone would hold it too, the order being claimed before it arrives; the id's hold also covers a
// request arriving between the first one's sighting of the id and its claim, which a test cannot time.)
func TestSameIDWaitsForTheOrderItNames(t *testing.T) {
	h := start(t, options{})
	h.ex.set("slow") // the exchange takes a second: the first order is out when the second request arrives
	h.verdict()
	first := make(chan int, 1)
	go func() {
		resp, _ := h.order(signed(limitOrder("twin"), botSecret))
		first <- resp.StatusCode
	}()
	deadline := time.Now().Add(5 * time.Second)
	for len(h.ex.requests()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the first order never reached the exchange")
		}
		time.Sleep(5 * time.Millisecond)
	}
	second := make(chan int, 1)
	go func() {
		resp, _ := h.order(signed(limitOrder("twin"), botSecret))
		second <- resp.StatusCode
	}()
	if s := <-first; s != 200 {
		t.Fatalf("first order: %d", s)
	}
	placed := h.expect("placed")
	select {
	case s := <-second:
		t.Fatalf("the second request was answered (%d) before the first order was booked", s)
	case <-time.After(300 * time.Millisecond):
	}
	for _, r := range h.py.requests() {
		if strings.Contains(r.uri, "twin") || strings.Contains(r.body, "twin") {
			t.Fatal("python got the second request before the first order was booked")
		}
	}
	h.sendMsg(map[string]any{"t": "adopted", "id": placed["id"]})
	select {
	case s := <-second:
		if s != 202 {
			t.Fatalf("second request: %d (want it forwarded to python)", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the second request is still held after the first order was booked")
	}
	if n := len(h.ex.requests()); n != 1 {
		t.Fatalf("the exchange got %d orders", n)
	}
}

// A request naming newClientOrderId many times records a bounded number of ids, but always the one the gateway
// reads (the first parameter named exactly so), wherever it comes.
func TestClientIDsRecordedPerRequestAreBounded(t *testing.T) {
	l := newLane(log.New(io.Discard, "", 0))
	var parts []string
	for i := 0; i < 50; i++ {
		parts = append(parts, "NEWCLIENTORDERID=flood"+strconv.Itoa(i))
	}
	parts = append(parts, "newClientOrderId=the-real-one")
	_, named := l.noteClientIDs(strings.Join(parts, "&"), nil)
	if len(named) != maxIDsPerRequest+1 {
		t.Fatalf("recorded %d ids, want %d", len(named), maxIDsPerRequest+1)
	}
	if !l.seen.testAndAdd("the-real-one") {
		t.Fatal("the id the gateway reads was not recorded")
	}
	if l.seen.testAndAdd("flood49") {
		t.Fatal("ids past the bound were recorded")
	}
}

// The intent log is emptied on request only when no order is pending: each record it held is then booked.
func TestTrimOnlyWhenNothingIsPending(t *testing.T) {
	h := start(t, options{})
	id := h.placeFast("trim-1")
	h.sendMsg(map[string]any{"t": "trim", "req": 7})
	if got := h.expect("trimmed"); got["done"] != false {
		t.Fatalf("trimmed with an order pending: %v", got)
	}
	if info, err := os.Stat(h.intents); err != nil || info.Size() == 0 {
		t.Fatalf("the record of the pending order is gone: %v %v", info, err)
	}
	h.sendMsg(map[string]any{"t": "adopted", "id": id})
	h.sendMsg(map[string]any{"t": "trim", "req": 8})
	if got := h.expect("trimmed"); got["done"] != true {
		t.Fatalf("not trimmed with nothing pending: %v", got)
	}
	if info, err := os.Stat(h.intents); err != nil || info.Size() != 0 {
		t.Fatalf("the log was not emptied: %v %v", info, err)
	}
	// Appends go on at the new end.
	h.placeFast("trim-2")
	data, err := os.ReadFile(h.intents)
	if err != nil || !strings.HasPrefix(string(data), "{") || strings.Count(string(data), "\n") != 1 {
		t.Fatalf("the log after the trim: %q %v", data, err)
	}
}
