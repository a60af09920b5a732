package adapters

import "time"

// SetCacheClock makes c read the time from now, so that tests can step
// over the bypass and log intervals instead of waiting for them.
func SetCacheClock(c *ProductRedisCache, now func() time.Time) { c.now = now }
