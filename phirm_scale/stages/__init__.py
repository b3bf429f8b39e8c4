"""Plate stages (convert, masks, inpaint, score, selfcheck), all run by one task runner."""
