"""Diarization head and permutation-invariant BCE: hand-computed values, invariances, padding."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from speechbrain_ext.superb.diarization import (
    DiarizationHead,
    frame_labels,
    logits_to_activity,
    pit_bce_loss,
)


def softplus(z):
    return math.log1p(math.exp(z))


def bce(z, y):  # -[y log σ(z) + (1 - y) log(1 - σ(z))]
    return softplus(z) - z * y


LOGITS = torch.tensor([[[2.0, -1.0], [0.0, 1.0]]])  # (1 utterance, 2 frames, 2 speakers)
LABELS = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])


def test_pit_loss_hand_computed():
    identity = (bce(2, 0) + bce(-1, 1)) / 2 + (bce(0, 1) + bce(1, 0)) / 2  # 2.7233
    swapped = (bce(2, 1) + bce(-1, 0)) / 2 + (bce(0, 0) + bce(1, 1)) / 2  # 0.7233
    assert swapped < identity
    loss, perms = pit_bce_loss(LOGITS, LABELS, torch.tensor([2]))
    assert loss.item() == pytest.approx(swapped / 2, rel=1e-6)  # over 2 valid frames
    assert perms.tolist() == [[1, 0]]
    # The best permutation's plain BCE is the PIT loss.
    aligned = LABELS[:, :, perms[0]]
    plain = F.binary_cross_entropy_with_logits(LOGITS, aligned, reduction="none").mean(-1).sum()
    assert loss.item() == pytest.approx(plain.item() / 2, rel=1e-6)


def test_pit_loss_is_invariant_to_label_column_order():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 9, 3, generator=generator)
    labels = torch.randint(0, 2, (3, 9, 3), generator=generator).float()
    lengths = torch.tensor([9, 6, 2])
    reference, _ = pit_bce_loss(logits, labels, lengths)
    for order in itertools.permutations(range(3)):
        loss, _ = pit_bce_loss(logits, labels[:, :, list(order)], lengths)
        assert loss.item() == pytest.approx(reference.item(), rel=1e-6)


def test_pit_loss_picks_a_permutation_per_utterance():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 7, 3, generator=generator)
    labels = torch.randint(0, 2, (2, 7, 3), generator=generator).float()
    lengths = torch.tensor([7, 4])
    loss, perms = pit_bce_loss(logits, labels, lengths)
    total = 0.0
    for b, length in enumerate(lengths.tolist()):
        per_perm = [
            F.binary_cross_entropy_with_logits(
                logits[b, :length], labels[b, :length][:, list(p)], reduction="none"
            )
            .mean(-1)
            .sum()
            .item()
            for p in itertools.permutations(range(3))
        ]
        total += min(per_perm)
        chosen = labels[b, :length][:, perms[b]]
        chosen_loss = F.binary_cross_entropy_with_logits(
            logits[b, :length], chosen, reduction="none"
        )
        assert chosen_loss.mean(-1).sum().item() == pytest.approx(min(per_perm), rel=1e-6)
    assert loss.item() == pytest.approx(total / 11, rel=1e-6)


def test_pit_loss_ignores_padded_frames():
    logits = torch.cat([LOGITS, torch.tensor([[[50.0, -50.0]]])], dim=1)
    labels = torch.cat([LABELS, torch.tensor([[[0.0, 1.0]]])], dim=1)  # a terrible padded frame
    padded, _ = pit_bce_loss(logits, labels, torch.tensor([2]))
    exact, _ = pit_bce_loss(LOGITS, LABELS)
    assert padded.item() == pytest.approx(exact.item(), rel=1e-6)
    with pytest.raises(ValueError, match="both be"):
        pit_bce_loss(LOGITS, LABELS[:, :, :1])


def test_head_padded_batch_equals_each_alone():
    torch.manual_seed(0)
    head = DiarizationHead(input_size=5, num_speakers=2, hidden_size=8).eval()
    x = [torch.randn(t, 5) for t in (9, 4)]
    padded = torch.nn.utils.rnn.pad_sequence(x, batch_first=True)
    padded[1, 4:] = 100.0  # garbage in the padding
    out = head(padded, torch.tensor([9, 4]))
    assert out.shape == (2, 9, 2)
    for b, xb in enumerate(x):
        alone = head(xb[None])[0]
        torch.testing.assert_close(out[b, : len(xb)], alone, atol=1e-6, rtol=1e-5)
    assert out[1, 4:].abs().max() == 0.0


def test_head_learns_a_toy_task():
    torch.manual_seed(0)
    head = DiarizationHead(input_size=2, num_speakers=2, hidden_size=8)
    x = torch.randn(4, 12, 2)
    labels = (x > 0).float()[:, :, [1, 0]]  # speaker order is arbitrary for PIT
    optimizer = torch.optim.Adam(head.parameters(), lr=0.05)
    first = None
    for _ in range(60):
        loss, _ = pit_bce_loss(head(x), labels)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5 * first


def test_frame_labels_and_activity():
    turns = [(0.26, 1.93, "1055"), (1.37, 3.25, "1054")]
    labels, speakers = frame_labels(turns, num_frames=40, frame_rate=10.0)
    assert speakers == ["1055", "1054"]
    # Centres 0.05, 0.15, ...: 1055 on frames 3..18 (0.35..1.85), 1054 on 14..31 (1.45..3.15).
    assert labels[:, 0].nonzero().flatten().tolist() == list(range(3, 19))
    assert labels[:, 1].nonzero().flatten().tolist() == list(range(14, 32))
    logits = torch.where(labels > 0, 4.0, -4.0)
    logits[10, 0] = -4.0  # a one-frame hole, closed by a median of 3
    assert torch.equal(logits_to_activity(logits, median=3), labels.long())
    assert not torch.equal(logits_to_activity(logits), labels.long())
