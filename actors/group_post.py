"""One post in a group's feed, with its kudos and comments."""

from __future__ import annotations

from actors.erasing import pseudonymise
from actors.events import GROUP_POSTED
from actors.paging import page
from engine.entity import Entity, query, update
from engine.errors import Forbidden, NotFound, Rejected

__all__ = ["GroupPost", "POST_LENGTH", "COMMENT_LENGTH", "MAX_COMMENTS"]

POST_LENGTH = 4_000
COMMENT_LENGTH = 2_000
MAX_COMMENTS = 500  # a post's thread is bounded: the 501st comment is refused
ERASED_POST = "This post's author deleted their account."  # what a thread others answered keeps of it


class GroupPost(Entity):
    kind = "group_post"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.group_id = ""
        self.author = ""
        self.text = ""
        self.at = 0.0
        self.kudos: dict[str, float] = {}
        self.comments: list[dict] = []  # newest first
        self.deleted = False

    def _require(self, group_id: str) -> None:
        if not self.group_id or self.deleted or group_id != self.group_id:
            raise NotFound("no such post")

    @update
    def create(self, group_id: str, author: str, author_name: str | None, text: str) -> dict:
        if self.group_id:
            raise Rejected("this post already exists")
        text = text.strip()
        if not 0 < len(text) <= POST_LENGTH:
            raise Rejected(f"a post has 1 to {POST_LENGTH} characters")
        self.group_id, self.author, self.text, self.at = group_id, author, text, self.now
        self.emit(GROUP_POSTED, group_id=group_id, post_id=self.id, author=author, author_name=author_name, text=text)
        return self.card(group_id)

    def erase_user(self, user_id: str, stand_in: str) -> bool:
        """Their kudos and comments go. Their post goes too; one that others commented on keeps its thread
        readable under a placeholder with no author."""
        self.kudos.pop(user_id, None)
        self.comments = [item for item in self.comments if item["author"] != user_id]
        if self.author == user_id:
            self.author, self.text = "", ERASED_POST
            if not self.comments:
                self.deleted = True
                self.text, self.kudos = "", {}
        return pseudonymise(self, user_id, stand_in)

    @query
    def card(self, group_id: str, viewer: str | None = None) -> dict:
        self._require(group_id)
        return {
            "id": self.id,
            "group_id": self.group_id,
            "author": self.author,
            "text": self.text,
            "at": self.at,
            "kudos": len(self.kudos),
            "comments": len(self.comments),
            "kudoed": viewer in self.kudos,
        }

    @update
    def delete(self, group_id: str, by: str, moderator: bool = False) -> None:
        """Its author, or a group admin (``moderator``), deletes it."""
        self._require(group_id)
        if by != self.author and not moderator:
            raise Forbidden("only its author or the group's admins may delete a post")
        self.deleted = True
        self.text, self.kudos, self.comments = "", {}, []

    @update
    def give_kudos(self, group_id: str, athlete: str) -> int:
        self._require(group_id)
        if athlete == self.author:
            raise Rejected("you cannot give kudos to your own post")
        self.kudos.setdefault(athlete, self.now)
        return len(self.kudos)

    @update
    def take_kudos(self, group_id: str, athlete: str) -> int:
        self._require(group_id)
        self.kudos.pop(athlete, None)
        return len(self.kudos)

    @query
    def kudos_list(self, group_id: str, before: list | None = None, limit: int = 50) -> dict:
        self._require(group_id)
        items = sorted(({"id": who, "at": at} for who, at in self.kudos.items()), key=lambda i: (i["at"], i["id"]))
        return page(items[::-1], before, limit)

    @update
    def comment(self, group_id: str, comment_id: str, author: str, text: str) -> dict:
        self._require(group_id)
        text = text.strip()
        if not 0 < len(text) <= COMMENT_LENGTH:
            raise Rejected(f"a comment has 1 to {COMMENT_LENGTH} characters")
        if len(self.comments) >= MAX_COMMENTS:
            raise Rejected(f"this post has {MAX_COMMENTS} comments, as many as a post takes")
        item = {"id": comment_id, "author": author, "text": text, "at": self.now}
        self.comments.insert(0, item)
        return item

    @update
    def remove_comment(self, group_id: str, comment_id: str, by: str, moderator: bool = False) -> None:
        self._require(group_id)
        for item in self.comments:
            if item["id"] == comment_id:
                if by not in (item["author"], self.author) and not moderator:
                    raise Forbidden("only its author, the post's author or the group's admins may delete a comment")
                self.comments.remove(item)
                return
        raise NotFound("no such comment")

    @query
    def comment_list(self, group_id: str, before: list | None = None, limit: int = 50) -> dict:
        self._require(group_id)
        return page(self.comments, before, limit)
