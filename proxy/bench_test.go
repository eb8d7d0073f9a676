package proxy

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkParseInvocation measures target and method extraction.
func BenchmarkParseInvocation(b *testing.B) {
	r := httptest.NewRequest(http.MethodPost, "/v1.0/invoke/orders/method/orders/42", nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseInvocation(r, "default"); err != nil {
			b.Fatal(err)
		}
	}
}
