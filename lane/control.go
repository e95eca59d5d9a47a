package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
)

// Messages on the control channel (docs/lane.md, "Control channel"). Each line is one JSON object whose `t` names it.

type listenConfig struct {
	Host string `json:"host"`
	Port int    `json:"port"`
	Unix string `json:"unix"`
}

type exchangeConfig struct {
	BaseURL       string  `json:"base_url"`
	APIKey        string  `json:"api_key"`
	Secret        string  `json:"secret"`
	TimeoutMs     float64 `json:"timeout_ms"`
	RecvWindowMs  int64   `json:"recv_window_ms"`
	SourceAddress *string `json:"source_address"`
}

type serverConfig struct {
	MaxConnections  int     `json:"max_connections"`
	IdleTimeoutS    float64 `json:"idle_timeout_s"`
	RequestTimeoutS float64 `json:"request_timeout_s"`
	MaxHeadBytes    int     `json:"max_head_bytes"`
	MaxBodyBytes    int64   `json:"max_body_bytes"`
}

type helloMsg struct {
	Listen    listenConfig   `json:"listen"`
	Upstream  string         `json:"upstream"`
	Exchange  exchangeConfig `json:"exchange"`
	IntentLog string         `json:"intent_log"`
	Server    serverConfig   `json:"server"`
}

type idsMsg struct {
	IDs []string `json:"ids"`
}

// stamp is one `[path, mtime_ns, ino, size]` of a verdict: the file as Python saw it when it judged.
type stamp struct {
	Path    string
	MtimeNs int64
	Ino     uint64
	Size    int64
}

func (s *stamp) UnmarshalJSON(data []byte) error {
	var parts []json.RawMessage
	if err := json.Unmarshal(data, &parts); err != nil {
		return err
	}
	if len(parts) != 4 {
		return errors.New("a stamp is [path, mtime_ns, ino, size]")
	}
	for i, target := range []any{&s.Path, &s.MtimeNs, &s.Ino, &s.Size} {
		if err := json.Unmarshal(parts[i], target); err != nil {
			return fmt.Errorf("stamp field %d: %w", i, err)
		}
	}
	return nil
}

type verdict struct {
	ID           int64    `json:"id"`
	Bot          string   `json:"bot"`
	APIKey       string   `json:"api_key"`
	Secret       string   `json:"secret"`
	Symbol       string   `json:"symbol"`
	Side         string   `json:"side"`
	MaxQty       float64  `json:"max_qty"`
	MaxPrice     *float64 `json:"max_price"`
	ExpiresMs    int64    `json:"expires_ms"`
	TimeOffsetMs int64    `json:"time_offset_ms"`
	Stamps       []stamp  `json:"stamps"`
	Intent       string   `json:"intent"`
	CID          string   `json:"cid"`
}

var intentPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// check refuses a verdict the fast path could not use safely. The cid goes into the exchange's query string and the
// symbol is compared with the bot's, so both must be plain.
func (v *verdict) check() error {
	switch {
	case v.Side != "BUY" && v.Side != "SELL":
		return errors.New("side is not BUY or SELL")
	case v.APIKey == "" || v.Secret == "":
		return errors.New("no bot key or secret")
	case v.Symbol == "" || !plainParam(v.Symbol):
		return errors.New("symbol is not plain")
	case !clientIDPattern.MatchString(v.CID):
		return errors.New("cid is not a valid client order id")
	case !intentPattern.MatchString(v.Intent):
		return errors.New("intent is not 32 hex digits")
	case !(v.MaxQty > 0):
		return errors.New("max_qty is not above 0")
	}
	return nil
}

type revokeMsg struct {
	Req int64   `json:"req"`
	IDs []int64 `json:"ids"`
}

type keyMsg struct {
	Req    int64  `json:"req"`
	APIKey string `json:"api_key"`
	Secret string `json:"secret"`
}

type adoptedMsg struct {
	ID int64 `json:"id"`
}

type resolvedMsg struct {
	Req     int64                      `json:"req"`
	Status  int                        `json:"status"`
	Body    string                     `json:"body"`
	Headers map[string]json.RawMessage `json:"headers"`
}

// headerValues reads one `headers` entry: a string (as the doc has it) or, tolerated, a list of strings.
func headerValues(raw json.RawMessage) []string {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		return many
	}
	return nil
}

// Lane to Python.

type readyMsg struct {
	T   string `json:"t"`
	URL string `json:"url"`
}

type revokedMsg struct {
	T       string  `json:"t"`
	Req     int64   `json:"req"`
	Gone    []int64 `json:"gone"`
	Claimed []int64 `json:"claimed"`
}

type ackMsg struct {
	T   string `json:"t"`
	Req int64  `json:"req"`
}

// trimMsg asks for the intent log to be emptied; trimmedMsg answers whether it was.
type trimMsg struct {
	Req int64 `json:"req"`
}

type trimmedMsg struct {
	T    string `json:"t"`
	Req  int64  `json:"req"`
	Done bool   `json:"done"`
}

// orderFields are what `placed` and `resolve` share.
type orderFields struct {
	ID      int64             `json:"id"`
	BotCID  string            `json:"bot_cid"`
	Type    string            `json:"type"`
	Qty     string            `json:"qty"`
	Price   *string           `json:"price"`
	Wire    [][2]string       `json:"wire"`
	SentMs  int64             `json:"sent_ms"`
	Status  *int              `json:"status"`
	Body    *string           `json:"body"`
	Headers map[string]string `json:"headers"`
}

type placedMsg struct {
	T string `json:"t"`
	orderFields
}

type resolveMsg struct {
	T   string `json:"t"`
	Req int64  `json:"req"`
	orderFields
	Error *string `json:"error"`
}

// intentRecord is one line of the intent log, written before the order leaves.
type intentRecord struct {
	ID     int64       `json:"id"`
	Intent string      `json:"intent"`
	CID    string      `json:"cid"`
	Bot    string      `json:"bot"`
	BotCID string      `json:"bot_cid"`
	Symbol string      `json:"symbol"`
	Side   string      `json:"side"`
	Type   string      `json:"type"`
	Qty    string      `json:"qty"`
	Price  *string     `json:"price"`
	Wire   [][2]string `json:"wire"`
	SentMs int64       `json:"sent_ms"`
}
