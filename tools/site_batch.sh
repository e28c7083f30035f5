#!/usr/bin/env bash
# tools/site_batch.sh INSTALL_ID BATCH_NO N_EVENTS — print one batch as a
# WordPress site would post it: N events of the last five minutes, one or
# two users, bulk or queue with some inline, the site's one model.
set -euo pipefail
install=$1 batch=$2 n=$3
now=$(date -u +%s)
case $(( $(printf '%d' "0x${install:0:2}") % 3 )) in
  0) model=gpt-4o-mini ;;
  1) model=gpt-4.1-mini ;;
  *) model=gpt-4o ;;
esac
printf '{"install_id":"%s","events":[' "$install"
for ((k = 0; k < n; k++)); do
  user=$(printf '%s:%d:user' "$install" $((k % 2 + 1)) | sha256sum | cut -d' ' -f1)
  case $((k % 5)) in 0) src=inline ;; 1|2) src=bulk ;; *) src=queue ;; esac
  p=$((120 + (k * 37 + batch * 11) % 400))
  c=$((15 + (k * 13) % 60))
  ts=$(date -u -d "@$((now - 290 + k * 290 / n))" +%Y-%m-%dT%H:%M:%SZ)
  [ "$k" -gt 0 ] && printf ','
  printf '{"event_id":"evt_%s_%d_%d","wp_user_id_hash":"%s","source":"%s","model":"%s","prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d,"cached_prompt_tokens":0,"request_id":"req_%d_%d","context":{"attachment_id":%d,"width":1024,"height":768},"created_at":"%s"}' \
    "${install:24:12}" "$batch" "$k" "$user" "$src" "$model" "$p" "$c" $((p + c)) "$batch" "$k" $((1000 + batch * 100 + k)) "$ts"
done
printf ']}'
