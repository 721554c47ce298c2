"""Named dataset lists for `topreward bench --preset`.

`oxe39`: the 39 Open X-Embodiment datasets of the TOPReward paper's Appendix C (Table 6), 20 episodes
each in the paper. `paper_voc` is the paper's TOPReward VOC with Qwen3-VL-8B for that dataset, printed
beside ours; the preset runs `--conventions paper` (the authors' first public code, which produced those
numbers) unless `--conventions` is given. Hub ids point at LeRobot's ports of the OXE datasets; they could not be checked from this
project's machines (no Hub access): if one has moved, pass the dataset explicitly instead of the preset.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PresetDataset:
    name: str  # as in the paper's table
    spec: str  # what `open_source` takes (Hub id or path)
    paper_voc: float | None = None


_OXE39 = [
    ("aloha_mobile_cabinet", 0.822),
    ("aloha_mobile_wash_pan", 0.977),
    ("aloha_mobile_wipe_wine", 0.961),
    ("aloha_static_candy", 0.963),
    ("aloha_static_coffee", 0.977),
    ("aloha_static_cups_open", 0.837),
    ("aloha_static_pro_pencil", 0.963),
    ("aloha_static_screw_driver", 0.937),
    ("aloha_static_vinh_cup", 0.916),
    ("aloha_static_vinh_cup_left", 0.903),
    ("aloha_static_ziploc_slide", 0.978),
    ("asu_table_top", 0.949),
    ("austin_buds_dataset", 0.954),
    ("austin_sirius_dataset", 0.854),
    ("berkeley_fanuc_manipulation", 0.866),
    ("berkeley_rpt", 0.983),
    ("berkeleymvp", 0.966),
    ("cmu_franka_exploration_dataset", 0.626),
    ("cmu_play_fusion", 0.975),
    ("cmustretch", 0.962),
    ("columbia_cairlab_pusht_real", 0.243),
    ("dlr_edan_shared_control", 0.867),
    ("dlr_sara_grid_clamp", 0.740),
    ("dlr_sara_pour", 0.721),
    ("jaco_play", 0.907),
    ("kaist_nonprehensile", 0.914),
    ("nyudoor", 0.802),
    ("nyufranka", 0.875),
    ("stanford_hydra_dataset", 0.973),
    ("stanford_kuka_multimodal_dataset", 0.821),
    ("stanford_robocook", 0.443),
    ("taco_play", 0.779),
    ("tokyo_u_lsmo", 0.977),
    ("ucsd_kitchen_dataset", 0.718),
    ("ucsd_pick_and_place_dataset", 0.819),
    ("utaustin_mutex", 0.735),
    ("utokyo_pr2_opening_fridge", 0.957),
    ("utokyo_pr2_tabletop_manipulation", 0.946),
    ("utokyo_xarm_bimanual", 0.815),
]

# Paper names that LeRobot spells differently on the Hub.
_HUB_NAMES = {
    "berkeleymvp": "berkeley_mvp",
    "cmustretch": "cmu_stretch",
    "nyudoor": "nyu_door_opening_surprising_effectiveness",
    "nyufranka": "nyu_franka_play_dataset",
}

PRESETS: dict[str, dict] = {
    "oxe39": {
        "episodes": 20,
        # the paper's numbers came from the authors' first public code: compare like with like
        "conventions": "paper",
        "datasets": [PresetDataset(n, f"lerobot/{_HUB_NAMES.get(n, n)}", v) for n, v in _OXE39],
    },
}


def preset(name: str) -> dict:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]
