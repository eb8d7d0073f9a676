package checkout

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Service calls orders through the sidecar at SidecarURL.
type Service struct {
	// SidecarURL is the sidecar's HTTP API, e.g. http://127.0.0.1:3500.
	SidecarURL string
	// Client makes the calls; nil means a default client.
	Client *http.Client
}

// Handler returns the service's HTTP handler.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /checkout", s.checkout)
	return mux
}

// Result is what POST /checkout returns.
type Result struct {
	OrdersStatus int             `json:"ordersStatus"`
	Order        json.RawMessage `json:"order"`
	Traceparent  string          `json:"traceparent"`
}

func (s *Service) checkout(w http.ResponseWriter, r *http.Request) {
	item := r.URL.Query().Get("item")
	if item == "" {
		item = "book"
	}
	body := fmt.Sprintf(`{"item":%q,"qty":1}`, item)
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost,
		s.SidecarURL+"/v1.0/invoke/orders/method/orders", strings.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	req.Header.Set("Content-Type", "application/json")
	// Continue the caller's trace.
	if tp := r.Header.Get("Traceparent"); tp != "" {
		req.Header.Set("Traceparent", tp)
	}
	c := s.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		http.Error(w, "calling orders: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if !json.Valid(b) {
		b, _ = json.Marshal(string(b))
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(Result{OrdersStatus: resp.StatusCode, Order: b, Traceparent: resp.Header.Get("Traceparent")})
}
