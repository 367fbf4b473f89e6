package datapath

//go:generate go tool bpf2go -tags linux -target bpfel -type ila_key -type ila_map_val -type ila_local_val -type ila_inflight_val -type ila_myloc_val -type ila_domain_val -type ila_locspace_val -type ila_config -type ila_port -type ila_nh -type ila_counters -type ila_miss_event -type ila_stat -type ila_map_ent -type ila_up_ent -type ila_csum -type ila_cfg_flag -type ila_map_flag -type ila_limit -type ila_local_flag xlat bpf/xlat.c -- -O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu -Ibpf
