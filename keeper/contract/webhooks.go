package contract

import "time"

// WebhookSpec is what a caller gives to add or replace a webhook.
type WebhookSpec struct {
	Name   string            `json:"name"`
	URL    string            `json:"url"`
	Format string            `json:"format,omitempty"` // json (default) or slack
	Kinds  []string          `json:"kinds,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	// Secret signs deliveries. On a replace, nil keeps the stored secret
	// and "" removes it.
	Secret *string `json:"secret,omitempty"`
}

// WebhookView is a webhook as the API shows it: never its secret, the URL
// redacted, with its delivery status.
type WebhookView struct {
	Name string `json:"name"`
	// URL is scheme and host only, except for admins (path shown, secret parts redacted).
	URL       string            `json:"url"`
	Format    string            `json:"format"`
	Kinds     []string          `json:"kinds"`
	Labels    map[string]string `json:"labels,omitempty"`
	Signed    bool              `json:"signed"`
	CreatedAt time.Time         `json:"created_at"`
	CreatedBy string            `json:"created_by,omitempty"`
	UpdatedAt time.Time         `json:"updated_at"`
	Status    WebhookStatus     `json:"status"`
}

// WebhookStatus is how a webhook's deliveries are going, since the keeper
// started.
type WebhookStatus struct {
	Queued      int       `json:"queued"`
	Delivered   uint64    `json:"delivered"`
	Failed      uint64    `json:"failed"`
	Dropped     uint64    `json:"dropped"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// Attempts are the latest delivery attempts, oldest first (only in a
	// single webhook's view).
	Attempts []DeliveryAttempt `json:"attempts,omitempty"`
}

// DeliveryAttempt is one try to deliver a notice.
type DeliveryAttempt struct {
	At         time.Time `json:"at"`
	Kind       string    `json:"kind"`
	Attempt    int       `json:"attempt"`
	Status     int       `json:"status,omitempty"`
	Error      string    `json:"error,omitempty"`
	DurationMS float64   `json:"duration_ms"`
	// Result is delivered, retry (another attempt follows) or failed.
	Result string `json:"result"`
}
