"""Where posts come from: the Mastodon sources (live streaming API, REST polling, recorded replays) and the
Kafka producer that feeds the topic bronze reads."""
