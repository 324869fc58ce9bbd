#!/bin/sh
# Prints the TOML drop-in for cpe-agent from UCI (/etc/config/cpe-agent).
#
#   cpe-agent.main.institution_code    -> institution_code
#   cpe-agent.main.state_dir           -> state_dir
#   cpe-agent.main.trust_anchor (list) -> trust_anchors
#   cpe-agent.carrier.url|ca|interval_s -> [carrier] url, ca, interval_s
#   cpe-agent.network.primary_uplink|backup_uplink -> [system] primary_uplink, backup_uplink
#   cpe-agent.network.lan (list)       -> [network] lan
#   cpe-agent.orders.key (list)        -> [orders] keys
# Unset options are left out (the agent's defaults apply). Values are quoted
# as TOML basic strings; interval_s must be a number.

get() { uci -q get "cpe-agent.$1"; }

# TOML basic string: backslash and double quote escaped.
quote() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }

# key = "value" when the option is set.
str() {
	value=$(get "$2") || return 0
	printf '%s = %s\n' "$1" "$(quote "$value")"
}

# key = ["a", "b"] when the list is set (UCI lists print space-separated).
list() {
	values=$(get "$2") || return 0
	out=
	for v in $values; do
		out="${out:+$out, }$(quote "$v")"
	done
	printf '%s = [%s]\n' "$1" "$out"
}

number() {
	value=$(get "$2") || return 0
	case "$value" in
		'' | *[!0-9]*)
			echo "uci-to-toml: cpe-agent.$2 must be a whole number, not '$value'" >&2
			exit 1
			;;
	esac
	printf '%s = %s\n' "$1" "$value"
}

echo "# Generated from /etc/config/cpe-agent by uci-to-toml; edit UCI, not this file."
str institution_code main.institution_code
str state_dir main.state_dir
list trust_anchors main.trust_anchor
echo "[carrier]"
str url carrier.url
str ca carrier.ca
number interval_s carrier.interval_s
echo "[system]"
str primary_uplink network.primary_uplink
str backup_uplink network.backup_uplink
echo "[network]"
list lan network.lan
if get orders.key >/dev/null; then
	echo "[orders]"
	list keys orders.key
fi
