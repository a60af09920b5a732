package domain

import (
	"encoding/json"
	"fmt"
	"time"
)

// SubjectUserRegistered is the subject of the event published when an
// account is opened through Register (stream USERS).
const SubjectUserRegistered = "user.registered"

// UserRegistered is the JSON payload of a user.registered event.
type UserRegistered struct {
	UserID       string    `json:"user_id"`
	Email        string    `json:"email"`
	Name         string    `json:"name"`
	RegisteredAt time.Time `json:"registered_at"`
}

// UserRegisteredPayload encodes the event announcing u.
func UserRegisteredPayload(u User) ([]byte, error) {
	b, err := json.Marshal(UserRegistered{UserID: u.ID, Email: u.Email, Name: u.Name, RegisteredAt: u.CreatedAt.UTC()})
	if err != nil {
		return nil, fmt.Errorf("encode user.registered: %w", err)
	}
	return b, nil
}
